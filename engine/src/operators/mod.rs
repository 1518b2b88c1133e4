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
