//! Where the lines go: stdout (a copy of it), or the --output file.

use std::fs::File;
use std::path::PathBuf;

use anyhow::{Context, Result};

/// Where the lines go: stdout, or the --output file.
pub struct Output {
    pub file: File,
    /// The --output file, reopened on SIGHUP; None for stdout, whose reader may go away.
    pub path: Option<PathBuf>,
}

/// Opens the --output file for appending, so that a copytruncate rotation leaves no
/// hole; a regular file starts empty unless `append` (--append). Anything else (a
/// FIFO, a pipe behind /dev/stdout or `>(...)`, /dev/null) is written as it is.
pub fn open_output(path: &std::path::Path, append: bool) -> Result<File> {
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let regular = file
        .metadata()
        .with_context(|| format!("reading {}'s type", path.display()))?
        .is_file();
    if regular && !append {
        file.set_len(0)
            .with_context(|| format!("emptying {}", path.display()))?;
    }
    Ok(file)
}
