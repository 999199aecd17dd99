//! hearth as a TLS client: a remote model behind `https://`. The upstream is a second hearth with
//! the real small models; in front of it, a TLS-terminating proxy started here with a certificate
//! from a CA the test makes (rcgen), which no system trusts. A remote model whose `ca_file` names
//! that CA answers through it; the same upstream without `ca_file` is refused, and the error says
//! the certificate is not trusted and how to fix it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_tests::{Options, Server};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

const CHAT: &str = "smollm2-135m-instruct";

/// A CA and a certificate it signed for `localhost` and 127.0.0.1: (CA PEM, leaf DER, leaf key DER).
fn certificates() -> (String, Vec<u8>, Vec<u8>) {
    let ca_key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "hearth test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap_or_else(|e| panic!("{e}"));
    let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap_or_else(|e| panic!("{e}"));
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap_or_else(|e| panic!("{e}"));
    (ca_cert.pem(), cert.der().to_vec(), key.serialize_der())
}

/// A TLS proxy on 127.0.0.1:0 to `upstream` (`host:port`); its port.
async fn tls_proxy(upstream: String, cert: Vec<u8>, key: Vec<u8>) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| {
            b.with_no_client_auth().with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(cert)],
                rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(key)),
            )
        })
        .unwrap_or_else(|e| panic!("TLS config: {e}"));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                // A client that does not trust the certificate aborts the handshake here.
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut plain) = TcpStream::connect(&upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

async fn chat(server: &Server, model: &str) -> (u16, Value) {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "What is the capital of France? Answer in one word."}], "temperature": 0, "max_tokens": 16});
    let r = reqwest::Client::new().post(server.url("/v1/chat/completions")).json(&body).send().await.unwrap_or_else(|e| panic!("{e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_model_over_https_trusts_its_ca_file_and_refuses_an_unknown_ca_clearly() {
    let upstream = Server::start();
    let (ca_pem, cert, key) = certificates();
    let port = tls_proxy(upstream.base.trim_start_matches("http://").to_owned(), cert, key).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap_or_else(|e| panic!("{e}"));
    let entry = |name: &str, extra: &str| {
        format!("[[models]]\nname = \"{name}\"\nkind = \"chat\"\nprovider = \"remote\"\nbase_url = \"https://localhost:{port}/v1\"\nremote_model = \"{CHAT}\"\nmax_retries = 0\n{extra}\n")
    };
    let config = format!("{}{}", entry("trusted", &format!("ca_file = \"{}\"", ca_file.display())), entry("untrusted", ""));
    let front = Server::spawn(Options { config: Some(&config), ..Options::default() }).unwrap_or_else(|(status, log)| panic!("exited {status:?}:\n{log}"));

    // The trusted model becomes ready once its probe went through the proxy.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, answer) = loop {
        let (status, answer) = chat(&front, "trusted").await;
        if status == 200 || Instant::now() > deadline {
            break (status, answer);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(status, 200, "{answer}\n{}", front.log());
    assert!(answer["choices"][0]["message"]["content"].as_str().is_some_and(|t| t.contains("Paris")), "{answer}");

    let (status, refused) = chat(&front, "untrusted").await;
    assert!(matches!(status, 502 | 503), "{status} {refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    for needle in ["upstream 'untrusted'", "certificate", "not trusted", "ca_file"] {
        assert!(message.contains(needle), "{needle:?} missing from {message:?}");
    }
}

#[test]
fn ca_file_is_for_https_upstreams_and_must_be_readable() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("hearth.toml");
    let cases = [
        ("http://127.0.0.1:9/v1", "ca_file = \"/etc/hostname\"", "only used for an https:// base_url"),
        ("https://127.0.0.1:9/v1", "ca_file = \"/nonexistent/ca.pem\"", "cannot be read"),
    ];
    for (url, extra, needle) in cases {
        let toml = format!("[[models]]\nname = \"r\"\nkind = \"chat\"\nprovider = \"remote\"\nbase_url = \"{url}\"\n{extra}\n");
        std::fs::write(&config, toml).unwrap_or_else(|e| panic!("{e}"));
        let out = hearth_tests::hearth_command().arg("validate").arg("--config").arg(&config).output().unwrap_or_else(|e| panic!("{e}"));
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success() && text.contains("ca_file") && text.contains(needle), "{url} {extra}: {text}");
    }
}
