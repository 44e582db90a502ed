//! The subject of a PKCS#10 certificate signing request, as Kubernetes carries it in
//! `CertificateSigningRequest.spec.request` (base64 of a PEM block). Only the subject's
//! common name and organisations are read: a request for `O=system:masters` asks for
//! cluster-admin. A minimal DER walk with every length checked; anything unexpected
//! yields `None`, never a panic.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Common name and organisations of a CSR subject.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    pub common_name: Option<String>,
    pub organizations: Vec<String>,
}

const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];

/// One DER TLV: (tag, contents, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Decode `spec.request` (base64 of PEM, or of DER) and read the subject.
pub fn subject(spec_request: &str) -> Option<Subject> {
    let raw = STANDARD.decode(spec_request.trim()).ok()?;
    let der = match std::str::from_utf8(&raw) {
        Ok(text) if text.contains("-----BEGIN") => {
            let body: String = text
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<Vec<_>>()
                .concat();
            STANDARD.decode(body.trim()).ok()?
        }
        _ => raw,
    };
    // CertificationRequest ::= SEQUENCE { info SEQUENCE { version, subject Name, ... }, ... }
    let (0x30, request, _) = tlv(&der)? else {
        return None;
    };
    let (0x30, info, _) = tlv(request)? else {
        return None;
    };
    let (0x02, _, rest) = tlv(info)? else {
        return None;
    };
    let (0x30, mut name, _) = tlv(rest)? else {
        return None;
    };
    let mut out = Subject::default();
    // Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value DirectoryString }
    while !name.is_empty() {
        let (0x31, mut set, rest) = tlv(name)? else {
            return None;
        };
        name = rest;
        while !set.is_empty() {
            let (0x30, attr, rest) = tlv(set)? else {
                return None;
            };
            set = rest;
            let (0x06, oid, value) = tlv(attr)? else {
                return None;
            };
            let (_, text, _) = tlv(value)?;
            let text = String::from_utf8_lossy(text).into_owned();
            if oid == OID_CN {
                out.common_name = Some(text);
            } else if oid == OID_O {
                out.organizations.push(text);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes
    /// -subj "/O=system:masters/O=devs/CN=mallory"`, base64-encoded as in the API.
    const CSR: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlIMU1JR2NBZ0VBTURveEZ6QVZCZ05WQkFvTURuTjVjM1JsYlRwdFlYTjBaWEp6TVEwd0N3WURWUVFLREFSawpaWFp6TVJBd0RnWURWUVFEREFkdFlXeHNiM0o1TUZrd0V3WUhLb1pJemowQ0FRWUlLb1pJemowREFRY0RRZ0FFCkd4eFNZZHhKY2pyWDY0VXo0RWY0SzBiTDlOSVNZaTJXQzdyZFc1U1d4NWF6Nno3ODhreTl3a01MZERtd2dob1EKWEV4TkR3V3c3TndZaUJzK1c0STlzYUFBTUFvR0NDcUdTTTQ5QkFNQ0EwZ0FNRVVDSUZac0w1OVlGUDFSRUdmZgoyQXBmSUNnakhqSXhjVkRycVNLRmt6THVEd1I3QWlFQWsyL0tFS0F6aDJpWVlIbEkwRlZBTWlxT0NiVGZ6U013CnRVTVp2LzJZaUNvPQotLS0tLUVORCBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K";

    #[test]
    fn reads_common_name_and_organizations() {
        let s = subject(CSR).expect("a valid CSR");
        assert_eq!(s.common_name.as_deref(), Some("mallory"));
        assert_eq!(s.organizations, ["system:masters", "devs"]);
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        assert_eq!(subject("not base64!"), None);
        assert_eq!(subject(&STANDARD.encode([0x30, 0x82, 0xff])), None);
        assert_eq!(
            subject(&STANDARD.encode([0x30, 0x03, 0x30, 0x05, 0x02])),
            None
        );
        for n in 0..40 {
            let raw = STANDARD.decode(CSR).unwrap();
            let _ = subject(&STANDARD.encode(&raw[..raw.len() * n / 40]));
        }
    }
}
