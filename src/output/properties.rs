//! Property tests: arbitrary records, as a buggy or hostile kernel side could write
//! them, through decoding and both formatters. Never a panic; one line per event in
//! text; one valid JSON object per line.

use chrono::FixedOffset;
use proptest::prelude::*;

use crate::config::Format;
use crate::model::abi::types::{endpoint, event, exec_event};
use crate::model::event::tests::bytes;
use crate::model::event::{decode, Clock, Event};
use crate::model::text::process_field;
use crate::output::{details, text_line, write_event, Style};

/// Mostly the values the kernel side writes, sometimes anything.
fn kind() -> impl Strategy<Value = u8> {
    prop_oneof![4 => 1u8..=8, 1 => any::<u8>()]
}

fn family() -> impl Strategy<Value = u8> {
    prop_oneof![Just(0u8), Just(2), Just(10), any::<u8>()]
}

fn protocol() -> impl Strategy<Value = u8> {
    prop_oneof![Just(6u8), Just(17), any::<u8>()]
}

prop_compose! {
    fn record()(
        kind in kind(),
        family in family(),
        protocol in protocol(),
        flags in any::<u8>(),
        value in any::<i64>(),
        ts_ns in any::<u64>(),
        duration_ns in any::<u64>(),
        sent in any::<u64>(),
        received in any::<u64>(),
        ids in any::<(u32, u32)>(),
        comm in any::<[u8; 16]>(),
        addrs in any::<([u8; 16], [u8; 16])>(),
        ports in any::<(u16, u16)>(),
        filename in proptest::collection::vec(any::<u8>(), 256),
        // Cut short or padded: the buffer hands over whatever length was written.
        resize in prop_oneof![3 => Just(None), 1 => (0usize..400).prop_map(Some)],
    ) -> Vec<u8> {
        let mut e = event {
            ts_ns,
            value,
            duration_ns,
            sent,
            received,
            pid: ids.0,
            tid: ids.1,
            local: endpoint { addr: addrs.0, port: ports.0 },
            remote: endpoint { addr: addrs.1, port: ports.1 },
            kind,
            family,
            protocol,
            flags,
            ..Default::default()
        };
        for (d, s) in e.comm.iter_mut().zip(comm) {
            *d = s as _;
        }
        let mut x = exec_event { base: e, ..Default::default() };
        for (d, s) in x.filename.iter_mut().zip(&filename) {
            *d = *s as _;
        }
        let mut data = if kind == 1 { bytes(&x) } else { bytes(&x.base) };
        if let Some(len) = resize {
            data.resize(len, 0xa5);
        }
        data
    }
}

fn check(data: &[u8], clock: i64, offset_secs: i32) {
    let Ok(ev) = decode(data, Clock { offset_ns: clock }) else {
        return;
    };
    let offset = FixedOffset::east_opt(offset_secs).unwrap();
    check_text(&ev, offset);
    check_json(&ev, offset);
}

/// The text line as it was built before it was written in place, with chrono and
/// one string per column: the reference for its layout.
fn reference_line(ev: &Event, offset: FixedOffset) -> String {
    let (proto, local, remote) = match &ev.socket {
        Some(s) => (
            s.protocol.name(),
            s.local.to_string(),
            s.remote.as_ref().map_or("*".into(), |r| r.to_string()),
        ),
        None => ("-", "-".into(), "-".into()),
    };
    let time = chrono::DateTime::from_timestamp_nanos(ev.time_ns)
        .with_timezone(&offset)
        .format("%H:%M:%S%.6f")
        .to_string();
    let line = format!(
        "{time:<15} {:>7} {:<15} {:<7} {proto:<5} {local:<21} {remote:<21} {}",
        ev.pid,
        process_field(&ev.process),
        ev.kind().name().to_uppercase(),
        details(ev)
    );
    format!("{}\n", line.trim_end())
}

fn check_text(ev: &Event, offset: FixedOffset) {
    assert_eq!(text_line(ev, offset), reference_line(ev, offset));
    let mut out = Vec::new();
    write_event(
        &mut out,
        ev,
        Style {
            format: Format::Text,
            offset,
            since: None,
            wide: false,
        },
    )
    .unwrap();
    let line = String::from_utf8(out).expect("text output is UTF-8");
    assert!(line.ends_with('\n'), "{line:?}");
    assert_eq!(line.matches(['\n', '\r']).count(), 1, "{line:?}");
    // TIME PID PROCESS EVENT PROTO LOCAL REMOTE: one field each.
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert!(fields.len() >= 7, "{line:?}");
    assert_eq!(fields[1], ev.pid.to_string(), "{line:?}");
    assert_eq!(fields[3], ev.kind().name().to_uppercase(), "{line:?}");
}

fn check_json(ev: &Event, offset: FixedOffset) {
    let mut out = Vec::new();
    write_event(
        &mut out,
        ev,
        Style {
            format: Format::Json,
            offset,
            since: None,
            wide: false,
        },
    )
    .unwrap();
    let text = String::from_utf8(out).expect("JSON output is UTF-8");
    assert!(
        text.ends_with('\n') && text.matches('\n').count() == 1,
        "{text:?}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["event"], ev.kind().name(), "{text}");
    assert_eq!(v["pid"], ev.pid, "{text}");
    assert!(v["time"].is_string(), "{text}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn shaped_records(data in record(), clock in any::<i64>(), offset in -86_399i32..86_400) {
        check(&data, clock, offset);
    }

    #[test]
    fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..480), clock in any::<i64>()) {
        check(&data, clock, 0);
    }
}
