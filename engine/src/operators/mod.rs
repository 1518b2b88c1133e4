//! The relational operators, one file each.
pub mod calc;
pub mod collect;
pub mod dedup;
pub mod group_agg;
pub mod interval_join;
pub mod join;
pub mod over_agg;
pub mod rank;
pub mod temporal_join;
pub mod watermark_assigner;
pub mod window_agg;
pub mod window_join;
pub mod window_rank;
pub mod window_tvf;

use crate::error::{EngineError, Result};

/// The watermark an operator restores from the operator states of the old subtasks whose key
/// groups it takes over (one state when the parallelism is unchanged): the smallest of them, so
/// that no row one of them would still have accepted is dropped as late. `None` when every state
/// is empty (the operator wrote none: it starts fresh). `decode` reads one state's watermark;
/// `operator` names the operator in the error.
pub(crate) fn restored_watermark(
    operator: &str,
    states: &[&[u8]],
    decode: impl Fn(&[u8]) -> Result<i64>,
) -> Result<Option<i64>> {
    let mut watermark: Option<i64> = None;
    for state in states.iter().filter(|s| !s.is_empty()) {
        let w = decode(state)
            .map_err(|e| EngineError::data(format!("cannot restore the {operator} state: {e}")))?;
        watermark = Some(watermark.map_or(w, |m| m.min(w)));
    }
    Ok(watermark)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &[u8]) -> Result<i64> {
        match s {
            [b'x'] => Err(EngineError::data("bad")),
            _ => Ok(i64::from(s[0])),
        }
    }

    #[test]
    fn the_restored_watermark_is_the_smallest_of_the_non_empty_states() {
        assert_eq!(restored_watermark("Op", &[&[]], decode).unwrap(), None);
        assert_eq!(
            restored_watermark("Op", &[&[9], &[], &[4], &[7]], decode).unwrap(),
            Some(4)
        );
        let err = restored_watermark("Op", &[&[3], b"x"], decode).unwrap_err();
        assert!(
            err.to_string().contains("cannot restore the Op state: "),
            "{err}"
        );
    }
}
