//! Verification as a hostile sender would try it, on a real delivery captured from MLflow
//! 3.17.2 (events/samples/inbound/mlflow-model_version.created.json, secret "fixture-secret").

use super::*;

const SECRET: &[u8] = b"fixture-secret";
const FIXTURE: &str =
    include_str!("../../../../events/samples/inbound/mlflow-model_version.created.json");

struct Delivery {
    id: String,
    ts: String,
    sig: String,
    body: Vec<u8>,
}

fn captured() -> Delivery {
    let v: Value = serde_json::from_str(FIXTURE).expect("fixture");
    let h = |k: &str| v["headers"][k].as_str().expect("header").to_owned();
    Delivery {
        id: h("X-MLflow-Delivery-Id"),
        ts: h("X-MLflow-Timestamp"),
        sig: h("X-MLflow-Signature"),
        body: v["body"].as_str().expect("body").as_bytes().to_vec(),
    }
}

impl Delivery {
    fn at(&self) -> i64 {
        self.ts.parse().expect("seconds")
    }
    fn check(&self, secrets: &[&[u8]], now: i64) -> Result<String, Refusal> {
        verify(
            secrets,
            &Headers {
                delivery_id: Some(&self.id),
                timestamp: Some(&self.ts),
                signature: Some(&self.sig),
            },
            &self.body,
            now,
            &Limits::default(),
        )
        .map(str::to_owned)
    }
}

#[test]
fn the_captured_delivery_verifies_and_our_signature_is_mlflows() {
    let d = captured();
    assert_eq!(d.check(&[SECRET], d.at()), Ok(d.id.clone()));
    assert_eq!(sign(SECRET, &d.id, &d.ts, &d.body), d.sig);
    match parse(&d.body).expect("parse") {
        Payload::VersionCreated {
            model,
            version,
            mlflow_run_id,
            tags,
            ..
        } => {
            assert_eq!((model.as_str(), version.as_str()), ("fraud-detector", "1"));
            assert!(mlflow_run_id.is_some());
            assert!(tags.contains(&("mlops.run_id".into(), "run-20261203-fixture".into())));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn tampering_is_refused_with_401() {
    let d = captured();
    let now = d.at();
    // One flipped byte anywhere in the body.
    for i in [0, d.body.len() / 2, d.body.len() - 1] {
        let mut t = captured();
        t.body[i] ^= 0x01;
        assert_eq!(
            t.check(&[SECRET], now),
            Err(Refusal::BadSignature),
            "byte {i}"
        );
    }
    // Trailing whitespace is still a different body.
    let mut t = captured();
    t.body.push(b'\n');
    assert_eq!(t.check(&[SECRET], now), Err(Refusal::BadSignature));
    // The wrong secret, an empty secret.
    assert_eq!(d.check(&[b"other-secret"], now), Err(Refusal::BadSignature));
    assert_eq!(d.check(&[b""], now), Err(Refusal::BadSignature));
    // The delivery id and timestamp are signed too.
    let mut t = captured();
    t.id = "00000000-0000-0000-0000-000000000000".into();
    assert_eq!(t.check(&[SECRET], now), Err(Refusal::BadSignature));
    let mut t = captured();
    t.ts = (d.at() + 1).to_string();
    assert_eq!(t.check(&[SECRET], now), Err(Refusal::BadSignature));
    // A truncated or re-encoded signature.
    let mut t = captured();
    t.sig.truncate(t.sig.len() - 4);
    assert!(t.check(&[SECRET], now).is_err());
    let mut t = captured();
    t.sig = t.sig.replace("v1,", "v2,");
    assert_eq!(
        t.check(&[SECRET], now).map_err(|e| e.status()),
        Err(401),
        "an unknown version is no signature"
    );
    let mut t = captured();
    t.sig = "v1,not base64!".into();
    assert_eq!(t.check(&[SECRET], now).map_err(|e| e.status()), Err(401));
}

#[test]
fn stale_and_future_timestamps_are_refused() {
    let d = captured();
    let skew = Limits::default().max_skew.as_secs() as i64;
    assert!(d.check(&[SECRET], d.at() + skew).is_ok());
    assert!(d.check(&[SECRET], d.at() - skew).is_ok());
    for now in [d.at() + skew + 1, d.at() - skew - 1, i64::MAX, i64::MIN] {
        match d.check(&[SECRET], now) {
            Err(e @ Refusal::Stale { .. }) => assert_eq!(e.status(), 401),
            other => panic!("now={now}: {other:?}"),
        }
    }
    let mut t = captured();
    t.ts = "soon".into();
    assert!(matches!(
        t.check(&[SECRET], d.at()),
        Err(Refusal::BadHeader {
            header: TIMESTAMP,
            ..
        })
    ));
}

#[test]
fn missing_headers_name_the_header() {
    let d = captured();
    for (missing, h) in [
        (
            DELIVERY_ID,
            Headers {
                delivery_id: None,
                timestamp: Some(&d.ts),
                signature: Some(&d.sig),
            },
        ),
        (
            TIMESTAMP,
            Headers {
                delivery_id: Some(&d.id),
                timestamp: None,
                signature: Some(&d.sig),
            },
        ),
        (
            SIGNATURE,
            Headers {
                delivery_id: Some(&d.id),
                timestamp: Some(&d.ts),
                signature: None,
            },
        ),
    ] {
        let e = verify(&[SECRET], &h, &d.body, d.at(), &Limits::default()).expect_err(missing);
        assert_eq!(e, Refusal::MissingHeader(missing));
        assert_eq!(e.status(), 401);
        assert!(e.to_string().contains(missing));
    }
}

#[test]
fn several_signature_entries_and_rotated_secrets() {
    let d = captured();
    let now = d.at();
    let mut t = captured();
    t.sig = format!("v1,AAAA v0,zzz {} v1,{}", d.sig, "B".repeat(44));
    assert!(
        t.check(&[SECRET], now).is_ok(),
        "one matching entry is enough"
    );
    t.sig = "v1,AAAA v1,BBBB".into();
    assert_eq!(t.check(&[SECRET], now), Err(Refusal::BadSignature));
    // During a rotation both the old and the new secret are tried.
    assert!(d.check(&[b"new-secret", SECRET], now).is_ok());
}

#[test]
fn oversized_and_malformed_bodies() {
    let d = captured();
    let mut t = captured();
    t.body = vec![b' '; Limits::default().max_body + 1];
    t.sig = sign(SECRET, &t.id, &t.ts, &t.body);
    let e = t.check(&[SECRET], d.at()).expect_err("too large");
    assert_eq!(e.status(), 413);
    // Signed but not JSON, or JSON of the wrong shape: 400 from parse.
    for body in [
        &b"not json"[..],
        b"[]",
        b"{}",
        b"{\"entity\":\"model_version\",\"action\":\"created\",\"data\":[]}",
        b"{\"entity\":\"model_version\",\"action\":\"created\",\"data\":{\"name\":\"m\"}}",
        b"{\"entity\":\"model_version\",\"action\":\"created\",\"data\":{\"name\":\"\",\"version\":\"1\"}}",
        b"{\"entity\":\"model_version_alias\",\"action\":\"created\",\"data\":{\"name\":\"m\",\"alias\":\"a\"}}",
        b"{\"entity\":\"model_version_tag\",\"action\":\"set\",\"data\":{\"name\":\"m\",\"version\":{}}}",
    ] {
        let e = parse(body).expect_err(&String::from_utf8_lossy(body));
        assert_eq!(e.status(), 400, "{e}");
    }
    // Event types the pipeline does not act on are not errors.
    assert_eq!(
        parse(
            b"{\"entity\":\"registered_model\",\"action\":\"created\",\"data\":{\"name\":\"m\"}}"
        ),
        Ok(Payload::Other("registered_model.created".into()))
    );
}

/// No input panics: random bytes, random headers, random bodies through verify and parse.
#[test]
fn arbitrary_input_never_panics() {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let d = captured();
    for _ in 0..5_000 {
        let n = (next() % 300) as usize;
        let mut body: Vec<u8> = (0..n).map(|_| next() as u8).collect();
        if next() % 2 == 0 {
            // Mutate the real body instead: mostly-valid JSON.
            body = d.body.clone();
            let i = (next() as usize) % body.len();
            body[i] = next() as u8;
        }
        let junk: String = (0..(next() % 20))
            .map(|_| (next() % 95 + 32) as u8 as char)
            .collect();
        let h = Headers {
            delivery_id: Some(&junk),
            timestamp: Some(&junk),
            signature: Some(&junk),
        };
        let _ = verify(&[SECRET], &h, &body, next() as i64, &Limits::default());
        let _ = parse(&body);
    }
}
