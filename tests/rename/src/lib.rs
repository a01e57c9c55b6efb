//! Uses the facade through a renamed dependency.
