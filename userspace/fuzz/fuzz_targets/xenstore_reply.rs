//! Fuzzes everything that parses bytes coming from xenstored: the stream
//! decoder, reply classification in both dialects, string lists,
//! permissions, watch events, numeric replies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenstore::wire::{self, Decoder, Dialect};

fuzz_target!(|data: &[u8]| {
    // Feed in two chunks at a data-dependent split, as a socket would.
    let split = data.first().map_or(0, |b| *b as usize).min(data.len());
    let mut d = Decoder::default();
    d.push(&data[..split]);
    let _ = d.next_msg();
    d.push(&data[split..]);
    while let Ok(Some(m)) = d.next_msg() {
        assert!(m.payload.len() <= wire::PAYLOAD_MAX);
        for dialect in [Dialect::Upstream, Dialect::Nephele] {
            let _ = wire::classify(dialect, m.clone());
        }
        if let Ok(strings) = wire::split_strings(&m.payload) {
            let _ = xenstore::Perms::parse(&strings);
        }
        let _ = wire::parse_watch_event(&m.payload);
        let _ = wire::parse_u32_reply(&m.payload);
        if let Ok(part) = wire::parse_directory_part(&m.payload) {
            assert!(part.names.iter().all(|n| !n.is_empty()));
        }
        let _ = wire::parse_error(&m.payload);
        // Re-encoding a decoded message gives back the same bytes.
        if let Ok(bytes) = m.encode() {
            let mut again = Decoder::default();
            again.push(&bytes);
            assert_eq!(again.next_msg().ok().flatten(), Some(m));
        }
    }
});
