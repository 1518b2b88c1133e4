//! Runs a `DataflowGraph`: one named thread per operator subtask, bounded channels between them.
