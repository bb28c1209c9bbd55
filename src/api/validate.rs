//! Validation of a Pod picolet is asked to run, naming the offending field.
