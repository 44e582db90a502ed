//! Identity and access: the generated authorisation matrix, tenant isolation with
//! canaries, sessions, CSRF, lockout, tokens, the audit chain and TLS.

use std::time::{Duration, Instant};

use model::{Access, Credential, Principal, Role, Scope, TenantId};
use palisade_tests::otlp::{record, request};
use palisade_tests::{Auth, TempDir, TestServer};
use serde_json::{Value, json};
use uuid::Uuid;

const PASSWORD: &str = "correct horse battery staple";

fn concrete(path: &str) -> String {
    path.replace("{id}", &Uuid::new_v4().to_string())
}

fn session_principal(role: Role, instance_admin: bool) -> Principal {
    Principal {
        tenant_id: TenantId(Uuid::nil()),
        credential: Credential::Session {
            user_id: Uuid::nil(),
            username: String::new(),
            role,
            instance_admin,
        },
    }
}

fn token_principal(scope: Scope) -> Principal {
    Principal {
        tenant_id: TenantId(Uuid::nil()),
        credential: Credential::Token {
            token_id: Uuid::nil(),
            scope,
        },
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn authorization_matrix_generated_from_the_route_table() {
    let server = TestServer::spawn_with(&["--api-rate-limit", "10000"])
        .await
        .unwrap();
    let table = web::routes::route_table();
    assert!(table.len() >= 18, "the table lists every route");
    for spec in &table {
        assert!(spec.path.starts_with('/'), "{spec:?}");
    }

    // Every role and every token scope.
    let mut actors: Vec<(String, Principal, Auth)> = Vec::new();
    for (name, role, instance_admin) in [
        ("viewer1", Role::Viewer, false),
        ("responder1", Role::Responder, false),
        ("admin1", Role::Admin, false),
        ("operator1", Role::Viewer, true),
    ] {
        server.add_user(name, "default", role.as_str(), instance_admin, PASSWORD);
        let session = server.login(name, PASSWORD).await.unwrap();
        actors.push((
            name.into(),
            session_principal(role, instance_admin),
            Auth::Session(session),
        ));
    }
    for scope in [Scope::Ingest, Scope::Read, Scope::Respond, Scope::Admin] {
        let token = server.token("default", scope.as_str());
        actors.push((
            format!("token:{scope}"),
            token_principal(scope),
            Auth::Token(token),
        ));
    }

    // Logout ends the session: check it last.
    let mut ordered = table.clone();
    ordered.sort_by_key(|s| s.path == "/api/v1/auth/logout");
    let mut checked = 0;
    for spec in &ordered {
        let path = concrete(spec.path);
        let body = (spec.method != "GET").then(|| json!({}));
        let call = |auth: Auth| {
            let server = &server;
            let path = path.clone();
            let body = body.clone();
            let method = spec.method.to_string();
            let listener = spec.listener;
            async move {
                if listener == "otlp_http" {
                    let mut req = server
                        .http
                        .post(format!("{}{path}", server.otlp_http))
                        .header("content-type", "application/json")
                        .body("{}");
                    if let Auth::Token(t) = &auth {
                        req = req.bearer_auth(t);
                    }
                    return req
                        .send()
                        .await
                        .expect("request reaches the server")
                        .status()
                        .as_u16();
                }
                server.call(&method, &path, &auth, body).await.0
            }
        };
        let anonymous = call(Auth::None).await;
        match spec.access {
            Access::Public => assert!(
                ![401, 403].contains(&anonymous),
                "{spec:?} anonymous got {anonymous}"
            ),
            Access::Requires(_) => assert_eq!(anonymous, 401, "{spec:?} without credentials"),
        }
        for (name, principal, auth) in &actors {
            if spec.listener == "otlp_http" && matches!(auth, Auth::Session(_)) {
                continue; // OTLP takes bearer tokens only
            }
            let status = call(auth.clone()).await;
            let allowed = match spec.access {
                Access::Public => true,
                Access::Requires(permission) => principal.can(permission),
            };
            if allowed {
                assert!(
                    ![401, 403].contains(&status),
                    "{} {} as {name}: allowed but got {status}",
                    spec.method,
                    spec.path
                );
            } else {
                assert_eq!(
                    status, 403,
                    "{} {} as {name}: must be forbidden",
                    spec.method, spec.path
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= table.len() * 6, "{checked} checks");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_tenant_never_sees_a_canary() {
    // Every route is called in a burst: the per-token rate limit is raised so the
    // answers are the routes' own.
    let server = TestServer::spawn_with(&["--api-rate-limit", "10000"])
        .await
        .unwrap();
    let canary = format!("canary{}", Uuid::new_v4().simple());
    let admin_a = Auth::Token(server.creds.api_token.clone());
    // Tenant A (default): a log record, a user and a token carrying the canary.
    assert_eq!(
        server
            .post_json(&request(
                "svc",
                vec![record(&format!("secret {canary}"), 17, vec![])]
            ))
            .await
            .status(),
        200
    );
    server.wait_for_total(&canary, 1).await;
    let (status, user, _) = server
        .call("POST", "/api/v1/users", &admin_a, Some(json!({"username": format!("{canary}-user"), "password": PASSWORD, "role": "viewer"})))
        .await;
    assert_eq!(status, 200, "{user}");
    let user_id = user["id"].as_str().unwrap().to_string();
    let (status, token, _) = server
        .call(
            "POST",
            "/api/v1/tokens",
            &admin_a,
            Some(json!({"scope": "read", "name": format!("{canary}-token")})),
        )
        .await;
    assert_eq!(status, 200, "{token}");
    let token_id = token["id"].as_str().unwrap().to_string();

    // Tenant B: its own admin session and admin token.
    assert!(
        server
            .run_cli(&["tenant", "create", "beta"])
            .unwrap()
            .status
            .success()
    );
    server.add_user("beta-admin", "beta", "admin", false, PASSWORD);
    let b_session = Auth::Session(server.login("beta-admin", PASSWORD).await.unwrap());
    let b_token = Auth::Token(server.token("beta", "admin"));

    let needles = [canary.as_str(), user_id.as_str(), token_id.as_str()];
    for b in [&b_session, &b_token] {
        for spec in web::routes::route_table() {
            if spec.listener != "api"
                || spec.path.contains("logout")
                || spec.path.contains("password")
            {
                continue;
            }
            let (path, body) = match (spec.method.as_str(), spec.path) {
                ("GET", p) => (format!("{p}?q={canary}&from=now-1d"), None),
                ("DELETE", "/api/v1/users/{id}") => (format!("/api/v1/users/{user_id}"), None),
                ("DELETE", "/api/v1/tokens/{id}") => (format!("/api/v1/tokens/{token_id}"), None),
                ("DELETE", "/api/v1/members/{id}") => (format!("/api/v1/members/{user_id}"), None),
                (_, p) => (p.to_string(), Some(json!({}))),
            };
            let (status, body, _) = server.call(spec.method.as_str(), &path, b, body).await;
            let text = body.to_string();
            for needle in needles {
                assert!(
                    !text.contains(needle),
                    "{} {path} leaked {needle}: {text}",
                    spec.method
                );
            }
            if spec.method == "DELETE" {
                assert_eq!(
                    status, 404,
                    "another tenant's object is 404, not 403: {path}"
                );
            }
        }
        let (_, everything) = server.search(&[("q", "*")]).await;
        let (_, b_all, _) = server
            .call("GET", "/api/v1/search?q=*&from=now-1d&limit=1000", b, None)
            .await;
        assert!(!b_all.to_string().contains(&canary));
        assert!(
            everything.to_string().contains(&canary),
            "tenant A still sees its own canary"
        );
    }
    // A's objects are intact after B's attempts.
    let (_, tokens, _) = server.call("GET", "/api/v1/tokens", &admin_a, None).await;
    let ours = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == token_id.as_str())
        .unwrap()
        .clone();
    assert!(ours["revoked_at"].is_null());
    let (_, users, _) = server.call("GET", "/api/v1/users", &admin_a, None).await;
    assert!(users.to_string().contains(&user_id));
}

/// A user of one tenant made a member of another: the session switches between them,
/// takes the role of the tenant it acts in, sees only that tenant's data, and ends
/// there when the membership is removed. The UI header carries the switcher.
#[tokio::test(flavor = "multi_thread")]
async fn users_in_several_tenants_switch_tenant_per_session() {
    let server = TestServer::spawn().await.unwrap();
    let canary = format!("canary{}", Uuid::new_v4().simple());
    assert_eq!(
        server
            .post_json(&request("svc", vec![record(&canary, 9, vec![])]))
            .await
            .status(),
        200
    );
    server.wait_for_total(&canary, 1).await;
    for tenant in ["gamma", "delta"] {
        let out = server.run_cli(&["tenant", "create", tenant]).unwrap();
        assert!(out.status.success());
    }
    server.add_user("gamma-admin", "gamma", "admin", false, PASSWORD);
    server.add_user("rover", "default", "viewer", false, PASSWORD);
    let gamma_admin = Auth::Session(server.login("gamma-admin", PASSWORD).await.unwrap());

    // Membership needs an existing user of another tenant; bad input names its field.
    for (body, want, field) in [
        (
            json!({"username": "nobody", "role": "viewer"}),
            404,
            "username",
        ),
        (
            json!({"username": "gamma-admin", "role": "viewer"}),
            404,
            "username",
        ),
        (json!({"username": "rover", "role": "root"}), 400, "role"),
        (
            json!({"username": "x".repeat(65), "role": "viewer"}),
            400,
            "username",
        ),
        (
            json!({"username": "rover", "role": "viewer", "extra": 1}),
            400,
            "extra",
        ),
    ] {
        let (status, reply, _) = server
            .call("POST", "/api/v1/members", &gamma_admin, Some(body))
            .await;
        assert_eq!(status, want, "{reply}");
        assert!(reply.to_string().contains(field), "{reply}");
    }
    let (status, added, _) = server
        .call(
            "POST",
            "/api/v1/members",
            &gamma_admin,
            Some(json!({"username": "rover", "role": "admin"})),
        )
        .await;
    assert_eq!(status, 200, "{added}");
    let rover_id = added["id"].as_str().unwrap().to_string();

    let rover = server.login("rover", PASSWORD).await.unwrap();
    let as_rover = Auth::Session(rover.clone());
    let (_, me, _) = server
        .call("GET", "/api/v1/auth/session", &as_rover, None)
        .await;
    assert_eq!(me["tenant"], "default", "login lands in the home tenant");
    assert_eq!(
        me["tenants"],
        json!([{"name": "default", "role": "viewer"}, {"name": "gamma", "role": "admin"}])
    );
    // A viewer at home: no user list there.
    let (status, _, _) = server.call("GET", "/api/v1/users", &as_rover, None).await;
    assert_eq!(status, 403);
    let (_, hits, _) = server
        .call(
            "GET",
            &format!("/api/v1/search?q={canary}&from=now-1d"),
            &as_rover,
            None,
        )
        .await;
    assert_eq!(hits["total"], 1, "{hits}");

    // Tenants that do not exist and tenants the user is not in are the same 404.
    for tenant in ["delta", "nowhere"] {
        let (status, reply, _) = server
            .call(
                "POST",
                "/api/v1/auth/tenant",
                &as_rover,
                Some(json!({"tenant": tenant})),
            )
            .await;
        assert_eq!(status, 404, "{reply}");
        assert!(reply.to_string().contains("not one of yours"), "{reply}");
    }
    let (status, _, _) = server
        .call(
            "POST",
            "/api/v1/auth/tenant",
            &as_rover,
            Some(json!({"tenant": "g".repeat(64)})),
        )
        .await;
    assert_eq!(status, 400);
    let token = Auth::Token(server.creds.api_token.clone());
    let (status, reply, _) = server
        .call(
            "POST",
            "/api/v1/auth/tenant",
            &token,
            Some(json!({"tenant": "gamma"})),
        )
        .await;
    assert_eq!(status, 400, "a token has one tenant: {reply}");
    // Without the CSRF token the switch is refused like any state change.
    let (status, _, _) = server
        .call(
            "POST",
            "/api/v1/auth/tenant",
            &Auth::SessionWithoutCsrf(rover.clone()),
            Some(json!({"tenant": "gamma"})),
        )
        .await;
    assert_eq!(status, 403);

    let (status, reply, _) = server
        .call(
            "POST",
            "/api/v1/auth/tenant",
            &as_rover,
            Some(json!({"tenant": "gamma"})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let (_, me, _) = server
        .call("GET", "/api/v1/auth/session", &as_rover, None)
        .await;
    assert_eq!(me["tenant"], "gamma");
    assert_eq!(me["principal"]["role"], "admin", "{me}");
    // Admin in gamma: its users (rover listed as a member), none of default's data.
    let (status, users, _) = server.call("GET", "/api/v1/users", &as_rover, None).await;
    assert_eq!(status, 200, "{users}");
    let listed: Vec<(String, bool)> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["username"].as_str().unwrap().to_string(),
                u["member"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            ("gamma-admin".to_string(), false),
            ("rover".to_string(), true)
        ]
    );
    let (_, hits, _) = server
        .call(
            "GET",
            &format!("/api/v1/search?q={canary}&from=now-1d"),
            &as_rover,
            None,
        )
        .await;
    assert_eq!(hits["total"], 0, "default's events stay in default: {hits}");

    // The UI header offers the switch; the admin page removes members, not disables.
    let http = palisade_tests::http_client();
    let page = http
        .get(format!("{}/admin", server.api))
        .header("cookie", &rover.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"tenant-switch\""), "{page}");
    assert!(page.contains("<option selected>gamma</option>"), "{page}");
    assert!(page.contains(&format!("/admin/members/{rover_id}/remove")));
    // The form post switches back (CSRF field and same origin), then forward again.
    let switched = http
        .post(format!("{}/tenant", server.api))
        .header("cookie", &rover.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}&tenant=default", rover.csrf))
        .send()
        .await
        .unwrap();
    // (The client follows the 303 to the incident list.)
    assert_eq!(switched.status().as_u16(), 200);
    assert_eq!(switched.url().path(), "/incidents");
    let (_, me, _) = server
        .call("GET", "/api/v1/auth/session", &as_rover, None)
        .await;
    assert_eq!(me["tenant"], "default");
    let refused = http
        .post(format!("{}/tenant", server.api))
        .header("cookie", &rover.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=forged&tenant=gamma")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let (status, _, _) = server
        .call(
            "POST",
            "/api/v1/auth/tenant",
            &as_rover,
            Some(json!({"tenant": "gamma"})),
        )
        .await;
    assert_eq!(status, 200);

    // Another tenant's admin cannot end the membership; gamma's admin can, and the
    // session acting in gamma ends at once.
    let (status, _, _) = server
        .call(
            "DELETE",
            &format!("/api/v1/members/{rover_id}"),
            &token,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _, _) = server
        .call(
            "DELETE",
            &format!("/api/v1/members/{rover_id}"),
            &gamma_admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = server
        .call("GET", "/api/v1/auth/session", &as_rover, None)
        .await;
    assert_eq!(status, 401, "the session acting in gamma ended");
    let again = Auth::Session(server.login("rover", PASSWORD).await.unwrap());
    let (_, me, _) = server
        .call("GET", "/api/v1/auth/session", &again, None)
        .await;
    assert_eq!(
        me["tenants"],
        json!([{"name": "default", "role": "viewer"}])
    );

    // gamma's trail has the membership's life and the switches.
    let (_, trail, _) = server
        .call("GET", "/api/v1/audit?from=now-1h", &gamma_admin, None)
        .await;
    let actions: Vec<&str> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["member.add", "auth.switch_tenant", "member.remove"] {
        assert!(actions.contains(&action), "{action} missing: {actions:?}");
    }
}

fn cookie_attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .map(|p| p.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_rotate_require_csrf_and_end_on_logout_and_password_change() {
    let server = TestServer::spawn().await.unwrap();
    let admin = server.creds.admin_username.clone();
    let password = server.creds.admin_password.clone();
    let first = server.login(&admin, &password).await.unwrap();
    let attributes = cookie_attributes(&first.set_cookie);
    for needed in ["httponly", "secure", "samesite=strict", "path=/"] {
        assert!(
            attributes.iter().any(|a| a == needed),
            "cookie lacks {needed}: {}",
            first.set_cookie
        );
    }
    assert!(first.cookie.starts_with("palisade_session="));
    assert!(!first.csrf.is_empty());

    // Session fixation: logging in while presenting a session yields a new id and
    // ends the old one.
    let resp = server
        .http
        .post(format!("{}/api/v1/auth/login", server.api))
        .header("cookie", &first.cookie)
        .json(&json!({"username": admin, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let second_cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let second_csrf = resp.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(second_cookie, first.cookie, "session id rotates at login");
    let (status, _, _) = server
        .call(
            "GET",
            "/api/v1/auth/session",
            &Auth::Session(first.clone()),
            None,
        )
        .await;
    assert_eq!(status, 401, "the pre-login session is gone");
    let second = palisade_tests::Session {
        cookie: second_cookie,
        set_cookie: String::new(),
        csrf: second_csrf,
    };
    let (status, me, _) = server
        .call(
            "GET",
            "/api/v1/auth/session",
            &Auth::Session(second.clone()),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(me["principal"]["username"], "admin");
    assert_eq!(me["csrf_token"], second.csrf.as_str());

    // CSRF: a state change without the token, or from another origin, is refused.
    let body = Some(json!({"scope": "read"}));
    let (status, err, _) = server
        .call(
            "POST",
            "/api/v1/tokens",
            &Auth::SessionWithoutCsrf(second.clone()),
            body.clone(),
        )
        .await;
    assert_eq!(status, 403, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("CSRF"));
    let cross = server
        .http
        .post(format!("{}/api/v1/tokens", server.api))
        .header("cookie", &second.cookie)
        .header("x-csrf-token", &second.csrf)
        .header("origin", "https://evil.example")
        .json(&json!({"scope": "read"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    let (status, created, _) = server
        .call(
            "POST",
            "/api/v1/tokens",
            &Auth::Session(second.clone()),
            body.clone(),
        )
        .await;
    assert_eq!(status, 200, "{created}");

    // Idle and absolute timeouts are enforced server-side.
    let third = server.login(&admin, &password).await.unwrap();
    let id = third.cookie.split_once('=').unwrap().1.to_string();
    let hash = hex_sha256(&id);
    server
        .sql(&format!(
            "UPDATE sessions SET last_seen_at = now() - interval '2 hours' WHERE id_hash = '{hash}'"
        ))
        .await;
    assert_eq!(
        server
            .call("GET", "/api/v1/auth/session", &Auth::Session(third), None)
            .await
            .0,
        401,
        "idle timeout"
    );
    let fourth = server.login(&admin, &password).await.unwrap();
    let hash = hex_sha256(fourth.cookie.split_once('=').unwrap().1);
    server
        .sql(&format!(
            "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id_hash = '{hash}'"
        ))
        .await;
    assert_eq!(
        server
            .call("GET", "/api/v1/auth/session", &Auth::Session(fourth), None)
            .await
            .0,
        401,
        "absolute timeout"
    );

    // Logout invalidates server-side (replaying the cookie fails).
    let (status, _, headers) = server
        .call(
            "POST",
            "/api/v1/auth/logout",
            &Auth::Session(second.clone()),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        server
            .call("GET", "/api/v1/auth/session", &Auth::Session(second), None)
            .await
            .0,
        401
    );

    // Password change ends every session of the user.
    let a = server.login(&admin, &password).await.unwrap();
    let b = server.login(&admin, &password).await.unwrap();
    let (status, err, _) = server
        .call(
            "POST",
            "/api/v1/auth/password",
            &Auth::Session(a.clone()),
            Some(json!({"current_password": password, "new_password": "short"})),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("new_password")
    );
    let (status, _, _) = server
        .call(
            "POST",
            "/api/v1/auth/password",
            &Auth::Session(a.clone()),
            Some(json!({"current_password": password, "new_password": "a much longer passphrase"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        server
            .call("GET", "/api/v1/auth/session", &Auth::Session(a), None)
            .await
            .0,
        401
    );
    assert_eq!(
        server
            .call("GET", "/api/v1/auth/session", &Auth::Session(b), None)
            .await
            .0,
        401
    );
    assert_eq!(server.login(&admin, &password).await.unwrap_err().0, 401);
    assert!(
        server
            .login(&admin, "a much longer passphrase")
            .await
            .is_ok()
    );
}

fn hex_sha256(text: &str) -> String {
    use std::process::Command;
    let out = Command::new("sha256sum")
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        });
    String::from_utf8(out.unwrap().stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn lockout_grows_and_responses_do_not_reveal_accounts() {
    let server = TestServer::spawn().await.unwrap();
    server.add_user("victim", "default", "viewer", false, PASSWORD);
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..4 {
        let t = Instant::now();
        let (status, body) = server
            .login("victim", &format!("wrong{i}"))
            .await
            .unwrap_err();
        known.push(t.elapsed());
        let t = Instant::now();
        let (status2, body2) = server
            .login(&format!("ghost{i}"), &format!("wrong{i}"))
            .await
            .unwrap_err();
        unknown.push(t.elapsed());
        assert_eq!(
            (status, &body),
            (status2, &body2),
            "same answer for a real and an unknown account"
        );
        assert_eq!(status, 401);
    }
    // Medians resist the noise of a busy CI machine; a real leak (no password hash
    // verified for unknown accounts) answers ~50x faster and still fails this.
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64()
    };
    let ratio = median(&mut known) / median(&mut unknown);
    assert!(
        (0.33..3.0).contains(&ratio),
        "timing reveals accounts: {known:?} vs {unknown:?}"
    );

    // Fifth failure locks the account, even for the right password, with a growing delay.
    assert_eq!(server.login("victim", "wrong5").await.unwrap_err().0, 401);
    let resp = server
        .http
        .post(format!("{}/api/v1/auth/login", server.api))
        .json(&json!({"username": "victim", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let first_wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(first_wait) + Duration::from_millis(100)).await;
    assert_eq!(server.login("victim", "wrong6").await.unwrap_err().0, 401);
    let (status, _) = server.login("victim", PASSWORD).await.unwrap_err();
    assert_eq!(status, 429, "locked again after another failure");
    // An unknown account behaves the same way.
    for i in 0..5 {
        assert_eq!(
            server
                .login("phantom", &format!("x{i}"))
                .await
                .unwrap_err()
                .0,
            401
        );
    }
    assert_eq!(server.login("phantom", "x").await.unwrap_err().0, 429);
    // Every failure is in the audit trail.
    let (_, audit, _) = server
        .call(
            "GET",
            "/api/v1/audit?limit=1000",
            &Auth::Token(server.creds.api_token.clone()),
            None,
        )
        .await;
    let failures = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "auth.login" && e["outcome"] == "failure")
        .count();
    assert!(
        failures >= 6,
        "failed logins of a real account are audited in its tenant: {failures}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_expire_revoke_at_once_record_use_and_are_rate_limited() {
    let dir = TempDir::new("palisade-limits");
    let url = palisade_tests::fresh_database().await.unwrap();
    let server = TestServer::start(
        &dir.0,
        Some(url),
        &["--api-rate-limit", "5", "--ingest-rate-limit", "3"],
    )
    .await
    .unwrap();
    let admin = Auth::Token(server.creds.api_token.clone());
    let (status, created, _) = server
        .call(
            "POST",
            "/api/v1/tokens",
            &admin,
            Some(json!({"scope": "read", "expires_in_days": 1})),
        )
        .await;
    assert_eq!(status, 200);
    let read = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(model::token::is_well_formed(&read));
    assert_eq!(
        server
            .call("GET", "/api/v1/search", &Auth::Token(read.clone()), None)
            .await
            .0,
        200
    );

    // Last use (time and address) is recorded.
    let (_, tokens, _) = server.call("GET", "/api/v1/tokens", &admin, None).await;
    let info = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(info["last_used_at"].is_string(), "{info}");
    assert_eq!(info["last_used_addr"], "127.0.0.1");
    assert!(
        !tokens.to_string().contains(&read),
        "the secret is never listed"
    );

    // Expiry takes effect at once.
    server
        .sql(&format!(
            "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = '{id}'"
        ))
        .await;
    assert_eq!(
        server
            .call("GET", "/api/v1/search", &Auth::Token(read), None)
            .await
            .0,
        401
    );

    // Revocation takes effect at once.
    let (_, created, _) = server
        .call(
            "POST",
            "/api/v1/tokens",
            &admin,
            Some(json!({"scope": "ingest"})),
        )
        .await;
    let ingest = created["token"].as_str().unwrap().to_string();
    let ingest_id = created["id"].as_str().unwrap().to_string();
    let body = serde_json::to_vec(&request("rl", vec![record("rate", 9, vec![])])).unwrap();
    assert_eq!(
        server
            .post_logs(body.clone(), "application/json", None, Some(&ingest))
            .await
            .status(),
        200
    );
    let (status, _, _) = server
        .call(
            "DELETE",
            &format!("/api/v1/tokens/{ingest_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        server
            .post_logs(body.clone(), "application/json", None, Some(&ingest))
            .await
            .status(),
        401
    );

    // Per-token rate limits: 429 with Retry-After on the API and on ingest.
    let limited = Auth::Token(server.token("default", "read"));
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let (status, _, headers) = server
            .call("GET", "/api/v1/auth/session", &limited, None)
            .await;
        if status == 429 {
            assert!(headers.contains_key("retry-after"));
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(
        server
            .call("GET", "/api/v1/auth/session", &admin, None)
            .await
            .0,
        200,
        "other tokens are unaffected"
    );
    let ingest2 = server.token("default", "ingest");
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let resp = server
            .post_logs(body.clone(), "application/json", None, Some(&ingest2))
            .await;
        if resp.status() == 429 {
            assert!(resp.headers().contains_key("retry-after"));
        }
        statuses.push(resp.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    // Bad token requests are well-formed errors that never echo the token.
    let (status, body, _) = server
        .call(
            "POST",
            "/api/v1/tokens",
            &admin,
            Some(json!({"scope": "root"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("scope"));
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_chain_verifies_and_detects_edits_and_deletions() {
    let server = TestServer::spawn().await.unwrap();
    let admin = Auth::Token(server.creds.api_token.clone());
    server
        .login(&server.creds.admin_username, &server.creds.admin_password)
        .await
        .unwrap();
    assert_eq!(
        server.login("nobody-here", "nope").await.unwrap_err().0,
        401
    );
    let (_, created, _) = server
        .call(
            "POST",
            "/api/v1/tokens",
            &admin,
            Some(json!({"scope": "read"})),
        )
        .await;
    let token_id = created["id"].as_str().unwrap().to_string();
    server
        .call(
            "DELETE",
            &format!("/api/v1/tokens/{token_id}"),
            &admin,
            None,
        )
        .await;
    assert!(
        server
            .run_cli(&["tenant", "create", "gamma"])
            .unwrap()
            .status
            .success()
    );

    let (status, audit, _) = server.call("GET", "/api/v1/audit", &admin, None).await;
    assert_eq!(status, 200);
    let entries = audit["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for needed in ["auth.login", "token.create", "token.revoke"] {
        assert!(actions.contains(&needed), "{actions:?}");
    }
    let login = entries
        .iter()
        .find(|e| e["action"] == "auth.login")
        .unwrap();
    assert_eq!(login["actor"], "user:admin");
    assert_eq!(login["outcome"], "success");
    assert_eq!(login["source_addr"], "127.0.0.1");
    assert!(!audit.to_string().contains(&server.creds.admin_password));
    // Searchable like any other stream.
    server
        .wait_for_total(
            "resource.service.name:palisade AND attributes.audit.action:token.revoke",
            1,
        )
        .await;

    let verify = |server: &TestServer| {
        let out = server.run_cli(&["audit", "verify"]).unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = verify(&server);
    assert!(ok, "{text}");
    assert!(text.contains("intact"), "{text}");

    // Append-only: a plain UPDATE is refused by the database.
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(server.database_url.as_ref().unwrap())
            .await
            .unwrap();
        let err = sqlx::query("UPDATE audit_log SET outcome = 'failure' WHERE id = 2")
            .execute(&mut conn)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    // Edited entry (by someone who disables the guard): detected and named.
    server.sql("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update; UPDATE audit_log SET target = 'user:someone-else' WHERE id = 2").await;
    let (ok, text) = verify(&server);
    assert!(!ok);
    assert!(
        text.contains("entry 2") && text.contains("modified"),
        "{text}"
    );
    // Deleted entry: detected and named.
    server.sql("DELETE FROM audit_log WHERE id >= 2 AND id <= 3; ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update").await;
    let (ok, text) = verify(&server);
    assert!(!ok);
    assert!(
        text.contains("entry 2") && text.contains("missing"),
        "{text}"
    );
}

fn openssl_cert(dir: &std::path::Path, name: &str) {
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "5", "-D", "-"])
        .args(args)
        .output()
        .expect("curl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_listeners_serve_with_a_test_certificate_and_reload_on_sighup() {
    let certs = TempDir::new("palisade-certs");
    openssl_cert(&certs.0, "first");
    std::fs::copy(certs.0.join("cert.pem"), certs.0.join("first-ca.pem")).unwrap();
    let dir = TempDir::new("palisade-tls");
    let url = palisade_tests::fresh_database().await.unwrap();
    let cert = certs.0.join("cert.pem");
    let key = certs.0.join("key.pem");
    let server = TestServer::start(
        &dir.0,
        Some(url),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await
    .unwrap();
    let api = server.api.replace("http://", "https://");
    let otlp = server.otlp_http.replace("http://", "https://");
    let first_ca = certs.0.join("first-ca.pem");
    let ca = first_ca.to_str().unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, text) = curl(&["--cacert", ca, &format!("{api}/readyz")]);
        if ok && text.contains("\"ready\"") {
            let lower = text.to_ascii_lowercase();
            assert!(
                lower.contains("strict-transport-security: max-age="),
                "HSTS with TLS: {text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "TLS API never ready: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Plain HTTP is not served on a TLS listener.
    let (ok, _) = curl(&[&format!("{}/healthz", server.api)]);
    assert!(!ok);
    // OTLP/HTTP over TLS.
    let body = serde_json::to_string(&request("tls", vec![record("over tls", 9, vec![])])).unwrap();
    let auth = format!("Authorization: Bearer {}", server.creds.ingest_token);
    let (ok, text) = curl(&[
        "--cacert",
        ca,
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &body,
        &format!("{otlp}/v1/logs"),
    ]);
    assert!(ok && text.starts_with("HTTP/"), "{text}");
    assert!(text.contains(" 200"), "{text}");
    // The session cookie carries the __Host- prefix.
    let login =
        json!({"username": server.creds.admin_username, "password": server.creds.admin_password})
            .to_string();
    let (_, text) = curl(&[
        "--cacert",
        ca,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &login,
        &format!("{api}/api/v1/auth/login"),
    ]);
    assert!(text.contains("__Host-palisade_session="), "{text}");

    // Replace the certificate and send SIGHUP: new handshakes use the new one.
    openssl_cert(&certs.0, "second");
    std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    let second_ca = certs.0.join("cert.pem");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, _) = curl(&[
            "--cacert",
            second_ca.to_str().unwrap(),
            &format!("{api}/healthz"),
        ]);
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "certificate not reloaded after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, _) = curl(&["--cacert", ca, &format!("{api}/healthz")]);
    assert!(!ok, "the old certificate is no longer served");
}
