//! What a run could not see or show, counted by kind: the notes while it happens,
//! the closing line, and the reasons assertions do not pass.

use crate::model::abi::types::counter;
use crate::model::text::count;

/// One kind of loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Events the event buffer had no room for.
    Lost,
    /// Runs of sockwatch's hooks the kernel skipped (one was already running there).
    Skipped,
    /// Sockets the socket table had no room for.
    Untracked,
    /// Tracked sockets whose release no hook saw.
    Missed,
    /// Processes the table of followed processes had no room for.
    Unfollowed,
    /// Calls in progress the table of calls had no room for.
    Unstashed,
    /// Returns of calls a return probe (kprobe mode) had no room for: more threads
    /// waited in the function at once than it could follow.
    ReturnsMissed,
    /// Closed TCP connections the table of orphans had no room for: retransmits
    /// after their CLOSE are not counted.
    Unfinished,
    /// Lines the output could not take.
    Unwritten,
    /// Processes of COMMAND's tree still running when --leave-tree ended the run.
    LeftRunning,
}

impl Loss {
    /// In the closing line's order.
    pub const ALL: [Loss; 10] = [
        Loss::Lost,
        Loss::Skipped,
        Loss::Untracked,
        Loss::Missed,
        Loss::Unfollowed,
        Loss::Unstashed,
        Loss::ReturnsMissed,
        Loss::Unfinished,
        Loss::Unwritten,
        Loss::LeftRunning,
    ];

    /// Whether assertions could have missed an event for it. The kernel matches
    /// them before the buffer and the output, so lost events and unwritten lines
    /// take nothing from them; a full socket table and unseen releases take CLOSE
    /// events only (`close`: some assertion is about them).
    pub fn hides_from_assertions(self, close: bool) -> bool {
        match self {
            Loss::Lost | Loss::Unwritten => false,
            Loss::Untracked | Loss::Missed | Loss::Unfinished => close,
            Loss::Skipped
            | Loss::Unfollowed
            | Loss::Unstashed
            | Loss::ReturnsMissed
            | Loss::LeftRunning => true,
        }
    }

    /// The kernel's counter of it, where the kernel counts it.
    pub fn counter(self) -> Option<counter> {
        match self {
            Loss::Lost => Some(counter::CTR_LOST),
            Loss::Untracked => Some(counter::CTR_UNTRACKED),
            Loss::Missed => Some(counter::CTR_MISSED),
            Loss::Unfollowed => Some(counter::CTR_UNFOLLOWED),
            Loss::Unstashed => Some(counter::CTR_UNSTASHED),
            Loss::Unfinished => Some(counter::CTR_UNFINISHED),
            Loss::Skipped | Loss::ReturnsMissed | Loss::Unwritten | Loss::LeftRunning => None,
        }
    }

    /// What is counted, and what happened to it: "3 events lost".
    fn noun_and_verb(self) -> (&'static str, &'static str) {
        match self {
            Loss::Lost => ("event", "lost"),
            Loss::Skipped => ("hook run", "skipped"),
            Loss::Untracked => ("socket", "untracked"),
            Loss::Missed => ("CLOSE line", "missed"),
            Loss::Unfollowed => ("process", "not followed"),
            Loss::Unstashed => ("call", "not followed"),
            Loss::ReturnsMissed => ("return", "missed"),
            Loss::Unfinished => ("closed connection", "not followed to the end"),
            Loss::Unwritten => ("line", "not written"),
            Loss::LeftRunning => ("process", "left running untraced"),
        }
    }

    /// `n` of them, as the closing line says it.
    pub fn phrase(self, n: u64) -> String {
        let (noun, verb) = self.noun_and_verb();
        format!("{} {verb}", count(n, noun))
    }

    /// The note on stderr when `new` more happened, `total` in all.
    pub fn note(self, new: u64, total: u64) -> String {
        let why = match self {
            Loss::Lost => format!("(the event buffer was full); {total} in all"),
            Loss::Skipped => format!(
                "(one of its programs was already running on that CPU): events may be missing; {total} in all"
            ),
            Loss::Untracked => format!(
                "(the socket table was full): {} will be missing",
                one_or_more(new, "its CLOSE line", "their CLOSE lines")
            ),
            Loss::Missed => format!(
                "(the last reference was in another thread's call or an untraced process): {} not seen",
                one_or_more(new, "its socket's release was", "their sockets' releases were")
            ),
            Loss::Unfollowed => format!(
                "(the table of followed processes was full): {} will be missing",
                one_or_more(new, "its events", "their events")
            ),
            Loss::Unstashed => format!(
                "(the table of calls in progress was full): {} may be missing",
                one_or_more(new, "its events", "their events")
            ),
            Loss::Unfinished => format!(
                "(the table of closed connections was full): retransmits after {} not counted",
                one_or_more(new, "its CLOSE are", "their CLOSE are")
            ),
            Loss::ReturnsMissed => format!(
                "(more threads waited in one function than its return probe had room for): their sends, receives or connects are missing; {total} in all"
            ),
            Loss::Unwritten => format!("(the output is not being read); {total} in all"),
            Loss::LeftRunning => "(COMMAND's tree, at COMMAND's exit with --leave-tree)".into(),
        };
        format!("sockwatch: {} {why}", self.phrase(new))
    }
}

/// `one` when `n` is 1, else `more`: the note's pronoun agrees with its count.
fn one_or_more(n: u64, one: &'static str, more: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        more
    }
}

/// A count of each kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Losses([u64; 10]);

impl Losses {
    pub fn get(&self, kind: Loss) -> u64 {
        self.0[kind as usize]
    }

    pub fn set(&mut self, kind: Loss, n: u64) {
        self.0[kind as usize] = n;
    }

    /// The kinds that happened and `pick` selects, as the closing line says them
    /// ("3 events lost").
    pub fn phrases(&self, pick: impl Fn(Loss) -> bool) -> Vec<String> {
        Loss::ALL
            .iter()
            .filter(|&&k| self.get(k) > 0 && pick(k))
            .map(|&k| k.phrase(self.get(k)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closing_line_names_what_happened_in_order() {
        let mut l = Losses::default();
        assert!(l.phrases(|_| true).is_empty());
        l.set(Loss::Unwritten, 12);
        l.set(Loss::Lost, 1);
        l.set(Loss::Missed, 1);
        assert_eq!(
            l.phrases(|_| true),
            [
                "1 event lost",
                "1 CLOSE line missed",
                "12 lines not written"
            ]
        );
        // What assertions about CONNECT, and about CLOSE, could have missed.
        assert!(l.phrases(|k| k.hides_from_assertions(false)).is_empty());
        assert_eq!(
            l.phrases(|k| k.hides_from_assertions(true)),
            ["1 CLOSE line missed"]
        );
    }

    #[test]
    fn notes_say_how_many_more_and_why() {
        assert_eq!(
            Loss::Lost.note(3, 10),
            "sockwatch: 3 events lost (the event buffer was full); 10 in all"
        );
        assert_eq!(
            Loss::Untracked.note(1, 1),
            "sockwatch: 1 socket untracked (the socket table was full): its CLOSE line will be missing"
        );
        assert_eq!(
            Loss::Untracked.note(2, 3),
            "sockwatch: 2 sockets untracked (the socket table was full): their CLOSE lines will be missing"
        );
        assert_eq!(
            Loss::Unwritten.note(5, 7),
            "sockwatch: 5 lines not written (the output is not being read); 7 in all"
        );
        assert_eq!(
            Loss::ReturnsMissed.note(54, 54),
            "sockwatch: 54 returns missed (more threads waited in one function than its return probe had room for): their sends, receives or connects are missing; 54 in all"
        );
        assert_eq!(
            Loss::Unfinished.phrase(2),
            "2 closed connections not followed to the end"
        );
    }

    #[test]
    fn missed_returns_leave_every_assertion_undecided() {
        assert!(Loss::ReturnsMissed.hides_from_assertions(false));
        assert!(
            Loss::Unfinished.hides_from_assertions(true)
                && !Loss::Unfinished.hides_from_assertions(false)
        );
    }
}
