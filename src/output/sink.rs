//! What every output format is: the header, each event, and the summary table.

use std::io::{self, Write};

use crate::model::event::Event;
use crate::model::summary::Summary;

/// Where an output format writes: the header before the first event, each event,
/// and the `-c`/`-C` table. (The closing line is a note on stderr in every format.)
pub trait Sink {
    /// Before the first event (text: the column titles).
    fn header(&self, out: &mut dyn Write) -> io::Result<()>;
    /// One event, as one line.
    fn event(&self, out: &mut dyn Write, ev: &Event) -> io::Result<()>;
    /// The summary table; `titles`: with its column titles, where the format has them.
    fn summary(&self, out: &mut dyn Write, summary: &Summary, titles: bool) -> io::Result<()>;
}
