//! Prefix scans: keys in byte order under a prefix, paged with `after` and a
//! limit, with copies (`scan_prefix`) or without (`scan_prefix_with`, which also
//! says whether keys remain past the limit); then keys *with values* through
//! the `prefix` iterator, as owned pairs or lent ones (`next_ref`).
//!
//! `cargo run --example prefix_scan --no-default-features`

#![allow(clippy::unwrap_used, reason = "an example should fail loudly")]

use kvstore::engine::{Batch, Engine, Options, ScanEnd};

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Engine::open(dir.path(), Options::default()).unwrap();

    // 250 users and some other keys, written in a scrambled order.
    let mut batch = Batch::new();
    for i in 0..250u32 {
        let id = (i * 97) % 250;
        batch.put(
            format!("user:{id:04}").as_bytes(),
            format!("name {id}").as_bytes(),
        );
    }
    batch
        .put(b"order:1", b"x")
        .put(b"usera", b"not under user:")
        .put(b"zzz", b"x");
    db.apply(batch).unwrap();
    db.delete(b"user:0100").unwrap();

    // Page through user: in pages of 100, passing the last key back as `after`.
    let mut after: Option<Vec<u8>> = None;
    let mut all = Vec::new();
    loop {
        let page = db.scan_prefix(b"user:", after.as_deref(), 100);
        let Some(last) = page.last() else { break };
        println!(
            "page of {:>3}: {} .. {}",
            page.len(),
            String::from_utf8_lossy(&page[0]),
            String::from_utf8_lossy(last)
        );
        after = Some(last.clone());
        all.extend(page);
    }
    assert_eq!(all.len(), 249, "250 users, one deleted");
    assert!(all.windows(2).all(|w| w[0] < w[1]), "byte order");
    assert!(all.iter().all(|k| k.starts_with(b"user:")));
    assert!(!all.contains(&b"user:0100".to_vec()));

    // Without copying: visit the keys and learn whether more remain.
    let mut count = 0;
    let end = db.scan_prefix_with(b"user:01", None, 50, |_key| count += 1);
    println!("user:01.. first 50: visited {count}, end {end:?}");
    assert_eq!((count, end), (50, ScanEnd::More));
    let mut count = 0;
    let end = db.scan_prefix_with(b"user:02", None, 100, |_key| count += 1);
    println!("user:02.. up to 100: visited {count}, end {end:?}");
    assert_eq!((count, end), (50, ScanEnd::Exhausted));

    // Keys with their values, in key order: each pair as a `KvPair` (it keeps
    // its segment mapped while it lives), or lent until the next call.
    let names: Vec<(Vec<u8>, Vec<u8>)> = db
        .prefix(b"user:00")
        .map(|pair| pair.unwrap().into_parts())
        .collect();
    assert_eq!(names.len(), 100);
    assert_eq!(names[7], (b"user:0007".to_vec(), b"name 7".to_vec()));
    let mut pairs = db.prefix(b"user:");
    let mut value_bytes = 0;
    while let Some(pair) = pairs.next_ref() {
        let (_key, value) = pair.unwrap();
        value_bytes += value.len();
    }
    println!("user:.. values: {value_bytes} bytes");
    let longest = db.get_pair(b"user:0249").unwrap().unwrap();
    assert_eq!(longest.value(), b"name 249");

    // The empty prefix lists everything.
    let everything = db.scan_prefix(b"", None, usize::MAX);
    println!("all keys: {}", everything.len());
    assert_eq!(everything.len(), 249 + 3);
    db.close().unwrap();
    println!("ok");
}
