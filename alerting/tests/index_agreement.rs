//! The in-memory evaluator (rules, exceptions, backtests of match rules) and the
//! index (search, threshold rules) must agree on what a query matches: every case
//! below runs against both, on the same records.

use chrono::Utc;
use model::{LogRecord, StoredLog, TenantId};
use query::compile::Compiler;
use serde_json::{Value, json};
use storage::index::{IndexConfig, LogIndex, TimeRangeMicros};

fn record(body: &str, severity: i16, text: &str, attributes: Value) -> LogRecord {
    LogRecord {
        severity_number: severity,
        severity_text: text.into(),
        attributes: attributes.as_object().cloned().unwrap(),
        resource: json!({"service.name": "py-http-json", "host.ip": "10.9.8.7"})
            .as_object()
            .cloned()
            .unwrap()
            .into(),
        scope_name: "s".into(),
        ..LogRecord::new(TenantId(uuid::Uuid::nil()), Utc::now(), body)
    }
}

#[test]
fn index_and_evaluator_agree_on_exact_values_cidrs_and_levels() {
    let records = [
        record(
            "failed login for root",
            13,
            "WARN",
            json!({"user.name": "root", "k8s.client.ip": "127.0.0.1"}),
        ),
        record(
            "x",
            13,
            "",
            json!({"user.name": "root-admin", "k8s.client.ip": "10.30.1.5"}),
        ),
        record(
            "x",
            17,
            "",
            json!({"user.name": "ROOT", "k8s.client.ip": "192.168.99.1"}),
        ),
        record(
            "x",
            9,
            "INFO",
            json!({"user": {"name": "root@evil.example"}, "k8s.client.ip": "::1", "ips": ["172.16.0.9", "8.8.8.8"]}),
        ),
        record(
            "x",
            9,
            "",
            json!({"user.name": "alice", "k8s.client.ip": "::ffff:10.1.2.3", "msg": "Failed Login from kubectl", "code": 401, "ok": true}),
        ),
        // An audit record: its bodies are searched by their words only.
        model::LogRecord {
            scope_name: "k8s.audit".into(),
            ..record(
                "x",
                9,
                "",
                json!({"k8s.audit.verb": "create",
                "k8s.request_object": {"spec": {"image": "nginx", "name": "Web-1", "replicas": 3}}}),
            )
        },
    ];
    let cases: &[(&str, &[usize])] = &[
        ("attributes.user.name:root", &[0]),
        ("attributes.user.name:ROOT", &[2]),
        ("attributes.user.name:\"root@evil.example\"", &[3]),
        ("attributes.user.name:root*", &[0, 1, 3]),
        ("attributes.user.name:*", &[0, 1, 2, 3, 4]),
        ("resource.service.name:js*", &[]),
        ("resource.service.name:py*", &[0, 1, 2, 3, 4, 5]),
        (
            "attributes.k8s.client.ip:(\"127.0.0.1\" OR \"::1\")",
            &[0, 3],
        ),
        ("attributes.k8s.client.ip:10.0.0.0/8", &[1, 4]),
        ("attributes.k8s.client.ip:127.0.0.0/8", &[0]),
        ("attributes.k8s.client.ip:::1/128", &[3]),
        ("attributes.ips:172.16.0.0/12", &[3]),
        ("resource.host.ip:10.9.0.0/16", &[0, 1, 2, 3, 4, 5]),
        ("NOT attributes.k8s.client.ip:10.0.0.0/8", &[0, 2, 3, 5]),
        ("attributes_text.msg:login", &[4]),
        ("attributes_text.msg:\"failed login\"", &[4]),
        ("attributes_text.user.name:root", &[0, 1, 2, 3]),
        ("attributes.msg:login", &[]),
        ("attributes.code:401", &[4]),
        ("attributes.code:>=400", &[4]),
        ("attributes.ok:true", &[4]),
        ("level:error", &[2]),
        ("level:warn", &[0, 1]),
        ("severity:info", &[3, 4, 5]),
        ("failed", &[0]),
        ("attributes.k8s.audit.verb:create", &[5]),
        ("attributes.k8s.request_object.spec.image:nginx", &[]),
        ("attributes.k8s.request_object.spec.replicas:3", &[]),
        ("attributes_text.k8s.request_object.spec.image:nginx", &[5]),
        ("attributes_text.k8s.request_object.spec.name:web", &[5]),
        ("attributes_text.k8s.request_object.spec.replicas:3", &[5]),
        ("attributes_text.user.name:alice", &[4]),
        ("attributes_text.user.name:ali*", &[4]),
        ("attributes_text.user.name:ro*", &[0, 1, 2, 3]),
        ("attributes_text.msg:\"login from\"", &[4]),
        ("attributes_text.code:401", &[4]),
        ("attributes_text.code:>400", &[4]),
    ];
    let dir = std::env::temp_dir().join(format!("palisade-agree-{}", uuid::Uuid::new_v4()));
    let index = LogIndex::open_or_create(&dir, &IndexConfig::default()).unwrap();
    let stored: Vec<StoredLog> = records
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, record)| StoredLog {
            seq: i as i64 + 1,
            record,
        })
        .collect();
    index.add(&stored).unwrap();
    index.commit(stored.len() as i64).unwrap();
    let compiler = Compiler::new(&index);
    let range = TimeRangeMicros {
        from: 0,
        to: i64::MAX,
    };
    for (q, expected) in cases {
        let expr = query::parse::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        let in_memory: Vec<usize> = records
            .iter()
            .enumerate()
            .filter(|(_, r)| alerting::eval::matches(&expr, r))
            .map(|(i, _)| i)
            .collect();
        let page = index
            .search(
                TenantId(uuid::Uuid::nil()),
                compiler.compile(&expr).unwrap(),
                range,
                None,
                100,
                storage::index::Order::Newest,
            )
            .unwrap();
        let mut indexed: Vec<usize> = page.hits.iter().map(|h| h.seq as usize - 1).collect();
        indexed.sort_unstable();
        assert_eq!(&in_memory, expected, "evaluator: {q}");
        assert_eq!(&indexed, expected, "index: {q}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
