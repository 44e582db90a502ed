//! The subject of a PKCS#10 certificate signing request, as Kubernetes carries it in
//! `CertificateSigningRequest.spec.request` (base64 of a PEM block). Only the subject's
//! common name and organisations are read: a request for `O=system:masters` asks for
//! cluster-admin. Decoded with RustCrypto's `x509-cert`/`der`, so every string type of
//! a directory name (PrintableString, TeletexString, UTF8String, BMPString, and
//! IA5String / VisibleString from older encoders) is understood; anything malformed
//! (including the long-deprecated UniversalString, which `der` does not decode)
//! yields `None`, never a panic.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use x509_cert::der::{Decode, Tag, Tagged};
use x509_cert::ext::pkix::name::DirectoryString;
use x509_cert::request::CertReq;

/// Common name and organisations of a CSR subject.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    pub common_name: Option<String>,
    pub organizations: Vec<String>,
}

const OID_CN: x509_cert::der::asn1::ObjectIdentifier =
    x509_cert::der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
const OID_O: x509_cert::der::asn1::ObjectIdentifier =
    x509_cert::der::asn1::ObjectIdentifier::new_unwrap("2.5.4.10");

/// Largest `spec.request` read (a CSR is a few hundred bytes to a few KiB).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

fn text(value: &x509_cert::der::Any) -> Option<String> {
    if let Ok(s) = value.decode_as::<DirectoryString>() {
        return Some(s.value().into_owned());
    }
    match value.tag() {
        Tag::Ia5String | Tag::VisibleString => {
            std::str::from_utf8(value.value()).ok().map(str::to_owned)
        }
        _ => None,
    }
}

/// Decode `spec.request` (base64 of PEM, or of DER) and read the subject.
pub fn subject(spec_request: &str) -> Option<Subject> {
    if spec_request.len() > MAX_REQUEST_BYTES {
        return None;
    }
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
    let request = CertReq::from_der(&der).ok()?;
    let mut out = Subject::default();
    for attribute in request.info.subject.iter() {
        if attribute.oid == OID_CN {
            out.common_name = text(&attribute.value);
        } else if attribute.oid == OID_O
            && let Some(o) = text(&attribute.value)
        {
            out.organizations.push(o);
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
        assert_eq!(subject(&"A".repeat(MAX_REQUEST_BYTES + 4)), None);
        for n in 0..40 {
            let raw = STANDARD.decode(CSR).unwrap();
            let _ = subject(&STANDARD.encode(&raw[..raw.len() * n / 40]));
        }
    }

    /// A request for `O=system:masters` whose organisation is a BMPString (or any
    /// other directory string type), built by `unsigned_csr` below: the hand-written
    /// reader this replaced read a BMPString as "\0s\0y..." and K8S-024 fired high,
    /// not critical.
    #[test]
    fn every_string_type_of_a_subject_is_read() {
        for (tag, encode) in [
            (0x1e_u8, bmp as fn(&str) -> Vec<u8>),
            (0x0c, |s: &str| s.as_bytes().to_vec()),
            (0x13, |s: &str| s.as_bytes().to_vec()),
            (0x14, |s: &str| s.as_bytes().to_vec()),
            (0x16, |s: &str| s.as_bytes().to_vec()),
            (0x1a, |s: &str| s.as_bytes().to_vec()),
        ] {
            let der = unsigned_csr(tag, &encode("system:masters"), "mallory");
            let s = subject(&STANDARD.encode(&der))
                .unwrap_or_else(|| panic!("tag {tag:#x} not decoded"));
            assert_eq!(s.organizations, ["system:masters"], "tag {tag:#x}");
            assert_eq!(s.common_name.as_deref(), Some("mallory"));
        }
    }

    fn bmp(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_be_bytes).collect()
    }

    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if body.len() < 0x80 {
            out.push(body.len() as u8);
        } else if body.len() <= 0xff {
            out.extend_from_slice(&[0x81, body.len() as u8]);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(body);
        out
    }

    /// A structurally valid CertificationRequest (the signature is not checked by
    /// Kubernetes' audit path, nor by us) with O in `tag` and CN as UTF8String.
    fn unsigned_csr(tag: u8, organization: &[u8], cn: &str) -> Vec<u8> {
        let atv =
            |oid: &[u8], value: Vec<u8>| tlv(0x31, &tlv(0x30, &[tlv(0x06, oid), value].concat()));
        let name = tlv(
            0x30,
            &[
                atv(&[0x55, 0x04, 0x0a], tlv(tag, organization)),
                atv(&[0x55, 0x04, 0x03], tlv(0x0c, cn.as_bytes())),
            ]
            .concat(),
        );
        // SubjectPublicKeyInfo: id-ecPublicKey, prime256v1, a 65-byte point.
        let algorithm = tlv(
            0x30,
            &[
                tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
                tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
            ]
            .concat(),
        );
        let mut point = vec![0u8, 0x04];
        point.extend_from_slice(&[7u8; 64]);
        let spki = tlv(0x30, &[algorithm, tlv(0x03, &point)].concat());
        let info = tlv(
            0x30,
            &[tlv(0x02, &[0]), name, spki, tlv(0xa0, &[])].concat(),
        );
        let sig_alg = tlv(
            0x30,
            &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
        );
        tlv(0x30, &[info, sig_alg, tlv(0x03, &[0, 0x30, 0x00])].concat())
    }
}
