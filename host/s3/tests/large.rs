//! A 100 MiB object (a multipart upload of 16 MiB parts) through the blocking facade,
//! with its content checked by hash and the process's peak memory checked to stay far
//! below the object's size. Alone in its test binary, so that the peak is its own.

mod support;

use support::*;

const SIZE: u64 = 100 * 1024 * 1024;
/// The most the process's peak resident memory may grow by while the object goes up and
/// comes back down: well under the object's size.
const MAX_GROWTH: u64 = 40 * 1024 * 1024;

#[test]
fn a_100_mib_object_streams_both_ways_in_bounded_memory() {
    let Some(env) = s3_env() else { return };
    let store = blocking(env.config);
    let key = format!("{}large.bin", unique_prefix("large"));
    let baseline = proc_status_bytes("VmRSS");

    let mut source = Generator::new(0x5eed, SIZE);
    let started = std::time::Instant::now();
    let stored = store.put(&env.bucket, &key, SIZE, &mut source).unwrap();
    let put_time = started.elapsed();
    assert_eq!(stored, SIZE);
    let sent = source.digest();

    let info = store
        .head(&env.bucket, &key)
        .unwrap()
        .expect("the object exists");
    assert_eq!(info.size, SIZE);
    // A multipart upload's entity tag is not an MD5: it ends in the part count.
    assert!(
        info.etag.as_deref().is_some_and(|e| e.ends_with("-7")),
        "{info:?}"
    );

    let started = std::time::Instant::now();
    let reader = store.get(&env.bucket, &key).unwrap();
    assert_eq!(reader.size(), SIZE);
    let (len, received) = hash_reader(reader).unwrap();
    let get_time = started.elapsed();
    assert_eq!(len, SIZE);
    assert_eq!(received, sent, "the object came back different");

    let peak = proc_status_bytes("VmHWM");
    eprintln!(
        "100 MiB: put {put_time:?}, get {get_time:?}; RSS before {} MiB, peak {} MiB",
        baseline >> 20,
        peak >> 20
    );
    assert!(
        peak.saturating_sub(baseline) < MAX_GROWTH,
        "peak RSS grew by {} MiB (from {} MiB): the body is being buffered",
        (peak - baseline) >> 20,
        baseline >> 20
    );
    store.delete(&env.bucket, &key).unwrap();
    assert_eq!(store.head(&env.bucket, &key).unwrap(), None);
}
