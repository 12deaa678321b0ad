//! What sockwatch knows, whatever it came from or goes to: the kernel's ABI as
//! generated from the BPF side, events and their parts, assertions, the summary,
//! losses, owners, and the text helpers every layer uses. Nothing here imports
//! from outside `model`.

pub mod abi;
pub mod assertion;
pub mod event;
pub mod losses;
pub mod names;
pub mod owner;
pub mod prefix;
pub mod status;
pub mod summary;
pub mod text;
pub mod unix_path;
