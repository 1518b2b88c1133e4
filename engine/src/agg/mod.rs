//! Aggregate functions as accumulators that can add and retract values.
