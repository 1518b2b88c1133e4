//! Window assignment: which windows an event-time timestamp belongs to (tumble, hop, cumulate) and
//! how session windows merge. Pure functions, tested on their own.
