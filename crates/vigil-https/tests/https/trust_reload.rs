//! A running sink polls its trust files: a bad file is refused and the last
//! good set stays in use; a good one is swapped in.

use std::time::Duration;

use crate::support::*;

#[test]
fn a_bad_trust_file_keeps_the_last_good_set() {
    let collector = collector_with_short_idle();
    let endpoint = collector.endpoint();
    let dir = TempDir::new("bad-trust");
    let good = std::fs::read_to_string(collector.ca_pem_path()).expect("CA PEM");
    let trust = dir.write("trust.pem", &good);
    let config = config_for(&collector, &trust).trust_poll_interval(Duration::from_millis(50));
    let stats = config.stats();
    let mut sink = config.build().expect("sink builds");
    deliver_ok(&mut sink, &batch("tr-0", 0..1));

    let key = rcgen::KeyPair::generate().expect("key").serialize_pem();
    let bad_contents: Vec<(&str, String)> = vec![
        ("contains no usable item", String::new()),
        ("is not valid PEM", "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n".to_string()),
        ("contains a private key, which does not belong there", format!("{good}{key}")),
    ];
    for (n, (why, contents)) in bad_contents.iter().enumerate() {
        let n = n as u64 + 1;
        dir.write("trust.pem", contents);
        deliver_until_refused(&mut sink, &stats, n);
        let expected = format!("trust file {} {why}", trust.display());
        let snap = stats.snapshot();
        assert!(snap.last_error.as_deref().unwrap_or_default().contains(&expected), "{snap:?}");
        let logs = https_logs(&endpoint);
        assert!(
            logs.iter().any(|r| r.level == log::Level::Warn
                && r.message.contains("keeping the last good trust set")
                && r.message.contains(&expected)),
            "no warning with {expected:?} in {logs:#?}"
        );
    }

    // A deleted file is refused too.
    std::fs::remove_file(&trust).expect("remove trust file");
    deliver_until_refused(&mut sink, &stats, 4);
    assert!(stats.snapshot().last_error.unwrap().contains("cannot be read"));

    // The last good set is still in use for new handshakes.
    let handshakes = stats.snapshot().handshakes;
    wait_idle(&collector);
    deliver_ok(&mut sink, &batch("tr-new-conn", 50..51));
    let snap = stats.snapshot();
    assert_eq!(snap.handshakes, handshakes + 1, "a new connection was verified with the kept set");
    assert_eq!(snap.trust_reloads, 0);
    assert_eq!(snap.trusted_certificates, 1);
    assert_eq!(snap.tls_failures, 0);

    // A good file again is swapped in.
    dir.write("trust.pem", &good);
    let mut i = 0;
    assert!(eventually(|| {
        i += 1;
        deliver_in_loop(&mut sink, &batch(&format!("tr-back-{i}"), 60 + i..61 + i));
        stats.snapshot().trust_reloads == 1
    }));
    assert_eq!(stats.snapshot().trust_reload_failures, 4);
}

#[test]
fn an_unchanged_file_is_not_reloaded() {
    let collector = collector();
    let config = config_for(&collector, &collector.ca_pem_path()).trust_poll_interval(Duration::ZERO);
    let stats = config.stats();
    let mut sink = config.build().expect("sink builds");
    for i in 0..5 {
        deliver_ok(&mut sink, &batch(&format!("un-{i}"), i..i + 1));
    }
    let snap = stats.snapshot();
    assert_eq!((snap.trust_reloads, snap.trust_reload_failures), (0, 0));
    assert_eq!(snap.handshakes, 1, "no reload, so the pooled connection stays");
}
