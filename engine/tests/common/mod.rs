//! What the keyed-state model tests share: a codec of `i64` keys and values, the store settings
//! they run with, and the two things they do to a subtask's store as the runtime does them
//! (take a snapshot, read every entry back).

use std::collections::BTreeMap;

use streamsql_engine::error::Result;
use streamsql_engine::state::store::SnapshotResult;
use streamsql_engine::state::{
    BackendKind, KeyedDelta, KeyedState, StateBackendConfig, StateCodec, StateContext,
};
use streamsql_storage::{snapshot, Compression, Snapshot};

/// The number of key groups.
pub const MAX_PARALLELISM: usize = 128;

/// Big-endian `i64` keys and values; the key hash spreads consecutive keys over key groups.
pub struct I64Codec;

impl StateCodec<i64, i64> for I64Codec {
    fn key_hash(&self, key: &i64) -> i32 {
        (*key as i32).wrapping_mul(0x9e37_79b9_u32 as i32)
    }
    fn encode_key(&self, key: &i64, out: &mut Vec<u8>) {
        out.extend_from_slice(&key.to_be_bytes());
    }
    fn decode_key(&self, bytes: &[u8]) -> Result<i64> {
        let b: [u8; 8] = bytes
            .try_into()
            .map_err(|_| streamsql_engine::codec::corrupt("not eight bytes"))?;
        Ok(i64::from_be_bytes(b))
    }
    fn encode_value(&self, value: &i64, out: &mut Vec<u8>) {
        self.encode_key(value, out);
    }
    fn decode_value(&self, bytes: &[u8]) -> Result<i64> {
        self.decode_key(bytes)
    }
}

/// Incremental checkpoints on `backend`; with sled, a memory budget small enough that the hot
/// map spills to the store between checkpoints.
pub fn config(backend: BackendKind) -> StateBackendConfig {
    StateBackendConfig {
        kind: backend,
        memory_budget: match backend {
            BackendKind::Sled => 4096,
            BackendKind::HashMap => 1 << 30,
        },
        local_dir: None,
        incremental: true,
        local_recovery: None,
        sled: Default::default(),
    }
}

/// Takes checkpoint `id` of `state` (a full snapshot outside the chain when `full`), as the task
/// and the store do it, and reads its file back.
pub fn take_snapshot(
    state: &mut KeyedState<i64, i64>,
    ctx: &StateContext,
    id: u64,
    full: bool,
) -> Snapshot {
    let mut delta = KeyedDelta::new();
    state.flush_into(&I64Codec, &mut delta);
    let store = ctx.store.as_ref().expect("a store");
    let (tx, rx) = std::sync::mpsc::channel();
    store.submit_snapshot(
        id,
        delta,
        full,
        Compression::Snappy,
        Box::new(move |r: SnapshotResult| {
            let _ = tx.send(r);
        }),
    );
    store.run_queued();
    let encoded = rx.recv().expect("a result").expect("a snapshot");
    snapshot::decode(&encoded.bytes).expect("decodes")
}

/// Every entry of the store, as a restore hands them to an operator.
pub fn contents(ctx: &StateContext) -> BTreeMap<i64, i64> {
    let mut out = BTreeMap::new();
    ctx.store
        .as_ref()
        .expect("a store")
        .scan(&mut |_, _, key, value| {
            out.insert(I64Codec.decode_key(key)?, I64Codec.decode_value(value)?);
            Ok(())
        })
        .expect("scans");
    out
}
