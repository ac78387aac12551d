//! The guided workshop: the exercise catalogue (what the workshop offers),
//! the attendee's progress (what they did), the `exercises` commands and
//! the full-screen guided app: `guided` (event loop and I/O), `state`
//! (what keys do), `screens` (drawing), `markdown` (briefings), `run`
//! (an exercise in this process), `facts` (questions and takeaways).

pub mod catalogue;
pub mod commands;
pub mod facts;
pub mod guided;
pub mod markdown;
pub mod progress;
pub mod run;
pub mod screens;
pub mod state;
