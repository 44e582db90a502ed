//! Annotation templates (minijinja): sandboxed — no file or network access, no
//! custom functions — and HTML-escaped by default, since event content is
//! attacker-controlled.

use minijinja::{AutoEscape, Environment};
use serde::Serialize;

/// Instructions one rendering may execute (minijinja fuel): a template cannot loop
/// long enough to stall the shared evaluator for other tenants.
pub const TEMPLATE_FUEL: u64 = 100_000;
/// Largest rendered annotation, in bytes.
pub const MAX_RENDERED_BYTES: usize = 16 * 1024;

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env
}

static BUDGET_EXCEEDED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Renderings stopped by the budget since the process started (`/metrics`).
pub fn budget_exceeded() -> u64 {
    BUDGET_EXCEEDED.load(std::sync::atomic::Ordering::Relaxed)
}

/// A writer that refuses to grow past [`MAX_RENDERED_BYTES`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_RENDERED_BYTES {
            return Err(std::io::Error::other("output limit"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Check a template compiles.
pub fn check(template: &str) -> Result<(), String> {
    environment()
        .template_from_str(template)
        .map(|_| ())
        .map_err(|e| format!("invalid template: {e}"))
}

/// Render a template with `context`; on error the raw template is returned (an
/// annotation is never worth losing an alert over). A template that runs out of fuel
/// or output space renders as a note saying so, which is what the alert shows.
pub fn render(template: &str, context: &impl Serialize) -> String {
    let env = environment();
    let Ok(compiled) = env.template_from_str(template) else {
        return template.to_string();
    };
    let mut out = Capped(Vec::new());
    match compiled.render_captured_to(minijinja::Value::from_serialize(context), &mut out) {
        Ok(_) => String::from_utf8_lossy(&out.0).into_owned(),
        Err(err) if err.kind() == minijinja::ErrorKind::OutOfFuel => {
            BUDGET_EXCEEDED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("[template exceeded its budget of {TEMPLATE_FUEL} instructions]")
        }
        Err(err) if err.kind() == minijinja::ErrorKind::WriteFailure => {
            BUDGET_EXCEEDED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("[template output exceeded {MAX_RENDERED_BYTES} bytes]")
        }
        Err(_) => template.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_and_escapes() {
        let ctx =
            json!({"group": {"attributes.user.name": "<script>alert(1)</script>"}, "count": 7});
        assert_eq!(
            render(
                "{{ count }} failures for {{ group['attributes.user.name'] }}",
                &ctx
            ),
            "7 failures for &lt;script&gt;alert(1)&lt;&#x2f;script&gt;"
        );
        assert_eq!(render("{{ missing }}x", &ctx), "x");
        assert!(check("{{ unclosed").is_err());
    }

    #[test]
    fn templates_cannot_stall_or_flood() {
        let started = std::time::Instant::now();
        let looped = render(
            "{% for i in range(4000) %}{% for j in range(4000) %}x{% endfor %}{% endfor %}",
            &json!({}),
        );
        assert!(
            looped.starts_with("[template ") && looped.contains("exceeded"),
            "{looped}"
        );
        let silent = render(
            "{% for i in range(4000) %}{% for j in range(4000) %}{% endfor %}{% endfor %}",
            &json!({}),
        );
        assert!(silent.contains("budget"), "{silent}");
        assert!(budget_exceeded() >= 2);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let wide = render("{{ big }}{{ big }}", &json!({"big": "x".repeat(10_000)}));
        assert!(wide.contains("exceeded"), "{}", &wide[..wide.len().min(80)]);
    }
}
