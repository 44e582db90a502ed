//! Time expressions: RFC 3339 or relative to now (`now`, `now-15m`, `now+1h`).

use chrono::{DateTime, Duration, Utc};

use crate::QueryError;

/// Parse a time parameter. `field` names the parameter in errors.
pub fn parse_time(
    text: &str,
    now: DateTime<Utc>,
    field: &'static str,
) -> Result<DateTime<Utc>, QueryError> {
    let text = text.trim();
    let invalid = |message: String| QueryError::InvalidParam { field, message };
    if let Some(rest) = text.strip_prefix("now") {
        if rest.is_empty() {
            return Ok(now);
        }
        let (sign, amount) = match rest.as_bytes()[0] {
            b'-' => (-1, &rest[1..]),
            b'+' => (1, &rest[1..]),
            _ => {
                return Err(invalid(format!(
                    "{text:?}: expected now, now-<n><unit> or now+<n><unit>"
                )));
            }
        };
        let duration = parse_duration(amount).map_err(|m| invalid(format!("{text:?}: {m}")))?;
        let shifted = if sign < 0 {
            now.checked_sub_signed(duration)
        } else {
            now.checked_add_signed(duration)
        };
        return shifted.ok_or_else(|| invalid(format!("{text:?} is out of range")));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|err| {
            invalid(format!(
                "{text:?} is neither RFC 3339 nor relative (now-15m): {err}"
            ))
        })
}

/// Parse `<n><unit>` with unit s, m, h, d or w (e.g. `15m`, `2h`, `7d`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("missing unit in {text:?} (use s, m, h, d or w)"))?;
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("expected a number before the unit in {text:?}"))?;
    let duration = match unit {
        "ms" => Duration::try_milliseconds(n),
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        "w" => Duration::try_weeks(n),
        other => return Err(format!("unknown unit {other:?} (use ms, s, m, h, d or w)")),
    };
    // Checked arithmetic: a duration past a century is refused, never a panic.
    duration
        .filter(|d| *d <= Duration::days(MAX_DURATION_DAYS))
        .ok_or_else(|| format!("{text:?} is too large (the limit is {MAX_DURATION_DAYS} days)"))
}

/// The longest duration a time expression may name (a century).
pub const MAX_DURATION_DAYS: i64 = 36_525;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute() {
        let now = DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_time("now", now, "from").unwrap(), now);
        assert_eq!(
            parse_time("now-15m", now, "from").unwrap(),
            now - Duration::minutes(15)
        );
        assert_eq!(
            parse_time("now+1h", now, "to").unwrap(),
            now + Duration::hours(1)
        );
        assert_eq!(
            parse_time("2026-11-26T10:00:00+01:00", now, "from").unwrap(),
            now - Duration::hours(3)
        );
        let err = parse_time("yesterday", now, "from")
            .unwrap_err()
            .to_string();
        assert!(err.contains("from") && err.contains("yesterday"), "{err}");
        assert!(
            parse_time("now-15x", now, "to")
                .unwrap_err()
                .to_string()
                .contains("unit")
        );
    }

    #[test]
    fn huge_and_extreme_times_are_errors_not_panics() {
        let now = Utc::now();
        for text in [
            "now-3153600000h",
            "now+99999999999999w",
            "now-9223372036854775807ms",
            "now-99999999999999999999999s",
            "now-36526d",
        ] {
            let err = parse_time(text, now, "from").unwrap_err().to_string();
            assert!(err.contains("from"), "{text}: {err}");
        }
        assert!(parse_time("now-36525d", now, "from").is_ok());
        let far = DateTime::<Utc>::MAX_UTC - Duration::days(1);
        assert!(parse_time("now+36525d", far, "to").is_err());
        assert!(parse_time("+262143-01-01T00:00:00Z", now, "to").is_err());
    }
}
