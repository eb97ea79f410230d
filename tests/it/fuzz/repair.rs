//! Fuzz target: the active file left by a crash. Cut anywhere and followed
//! by any bytes, it is repaired on open without losing a complete row or
//! leaving a torn line, and someone else's file is never touched.

use super::*;
use edge_agent::history::HEADER;
use edge_agent::store::ActiveFile;

/// What follows the cut: nothing, zeros (a block allocated but never
/// written), or arbitrary bytes, with or without newlines.
fn tail() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        (1usize..600).prop_map(|n| vec![0u8; n]),
        proptest::collection::vec(
            any::<u8>().prop_filter("no newline", |b| *b != b'\n'),
            1..64
        ),
        proptest::collection::vec(any::<u8>(), 1..64),
        "[0-9a-z,:.T\n-]{1,64}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(cases(300))]

    /// After a cut anywhere and any tail: the header, every row that
    /// was complete before the cut, then lines the tail itself formed
    /// that parse as rows (the damage cannot be told from data there),
    /// then the new rows. Every line parses; nothing is torn.
    #[test]
    fn torn_tail_repaired(
        old in rows(40),
        new in rows(5),
        cut in any::<prop::sample::Index>(),
        tail in tail(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("readings.csv");
        let mut full = HEADER.as_bytes().to_vec();
        full.extend(encode(&old));
        let cut = cut.index(full.len() + 1);
        let mut damaged = full[..cut].to_vec();
        damaged.extend(&tail);
        std::fs::write(&path, &damaged).unwrap();
        // Ours: the first line is the header; or only the header was
        // being written (a start of it, then zeros); or rows of ours came
        // without the header, perhaps after zeros (a copytruncate): those
        // are adopted, the header put before them.
        let head = &damaged[..damaged.len().min(512)];
        let text = head.iter().position(|b| *b == 0).unwrap_or(head.len());
        let zeros_end = text + damaged[text..].iter().take_while(|b| **b == 0).count();
        let row_first = |bytes: &[u8]| {
            let bytes = &bytes[..bytes.len().min(512)];
            bytes.iter().position(|b| *b == b'\n').is_some_and(|i| parses(&bytes[..i]))
        };
        let ours = match head.iter().position(|b| *b == b'\n') {
            Some(i) if head[..i] == *HEADER.trim_end().as_bytes() => true,
            _ if !HEADER.as_bytes().starts_with(&head[..text]) => row_first(head),
            _ => {
                text == head.len()
                    || zeros_end == damaged.len()
                    || (text == 0 && row_first(&damaged[zeros_end..]))
            }
        };
        // The lines the file holds, after any zeros an adoption drops.
        let whole = lines(if text == 0 { &damaged[zeros_end..] } else { &damaged[..] });
        let opened = block_on(ActiveFile::open(&RealDisk, &path));
        if !ours {
            // Someone else's file: never cut, never appended to.
            prop_assert!(opened.is_err(), "opened a file that is not ours");
            prop_assert_eq!(std::fs::read(&path).unwrap(), damaged);
            return Ok(());
        }
        let mut active = opened.unwrap();
        let added = encode(&new);
        block_on(active.append(&added)).unwrap();
        prop_assert_eq!(active.size(), std::fs::metadata(&path).unwrap().len());
        drop(active);
        let after = std::fs::read(&path).unwrap();
        prop_assert_eq!(after.last().copied().unwrap_or(b'\n'), b'\n', "torn last line");
        let got = lines(&after);
        prop_assert_eq!(got[0], HEADER.trim_end().as_bytes());
        let kept = lines(&full[..cut]);
        let new_lines = lines(&added);
        prop_assert!(got.len() >= kept.len().max(1) + new_lines.len());
        // Every complete row before the cut is still there, in order.
        prop_assert_eq!(&got[..kept.len().max(1)], &lines(&full)[..kept.len().max(1)]);
        // The new rows come last.
        prop_assert_eq!(&got[got.len() - new_lines.len()..], &new_lines[..]);
        // Between them only lines of the damaged file that parse.
        for l in &got[kept.len().max(1)..got.len() - new_lines.len()] {
            prop_assert!(whole.contains(l), "line not in the damaged file");
        }
        for (i, l) in got.iter().enumerate().skip(1) {
            prop_assert!(parses(l), "line {} does not parse: {:?}", i + 1, String::from_utf8_lossy(l));
        }
    }
}
