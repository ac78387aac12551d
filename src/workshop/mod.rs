//! The guided workshop: the exercise catalogue (what the workshop offers),
//! the attendee's progress (what they did), the `exercises` commands and the
//! interactive runner.

pub mod catalogue;
pub mod commands;
pub mod guided;
pub mod progress;
