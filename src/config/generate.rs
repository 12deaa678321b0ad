//! The man page and shell completions, generated from the clap definition so they
//! never disagree with `--help` (`sockwatch --generate man`, as ripgrep does).

use std::io::{self, Write};

use clap::CommandFactory;
use clap_complete::Shell;
use roff::{bold, roman, Roff};

use crate::config::args::{Args, Generate, EXAMPLES, EXPRESSIONS, PRIVILEGES};
use crate::model::status::Status;

/// Writes what `--generate KIND` asks for.
pub fn write(kind: Generate, out: &mut impl Write) -> io::Result<()> {
    let mut cmd = Args::command();
    match kind {
        Generate::Man => man(cmd, out),
        Generate::CompleteBash => complete(Shell::Bash, &mut cmd, out),
        Generate::CompleteZsh => complete(Shell::Zsh, &mut cmd, out),
        Generate::CompleteFish => complete(Shell::Fish, &mut cmd, out),
    }
}

/// The man page: clap's sections, then examples, privileges and exit statuses as
/// man pages lay them out (section 8: it needs root, like the other tracers).
fn man(cmd: clap::Command, out: &mut impl Write) -> io::Result<()> {
    let man = clap_mangen::Man::new(cmd).section("8");
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    let mut roff = Roff::new();
    roff.control("SH", ["EXAMPLES"]);
    for (cmd, what) in EXAMPLES {
        roff.control("TP", [])
            .text([bold(*cmd)])
            .text([roman(*what)]);
    }
    roff.control("SH", ["EXPRESSIONS"]);
    for line in EXPRESSIONS.lines().skip(2) {
        roff.control("br", []).text([roman(line.trim_start())]);
    }
    roff.control("SH", ["PRIVILEGES"]).text([roman(PRIVILEGES)]);
    roff.control("SH", ["EXIT STATUS"]);
    for status in Status::ALL {
        roff.control("TP", [])
            .text([bold(status.code().to_string())])
            .text([roman(status.meaning())]);
    }
    roff.to_writer(out)?;
    man.render_version_section(out)
}

fn complete(shell: Shell, cmd: &mut clap::Command, out: &mut impl Write) -> io::Result<()> {
    clap_complete::generate(shell, cmd, "sockwatch", out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(kind: Generate) -> String {
        let mut out = Vec::new();
        write(kind, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn man_page_has_every_option_and_the_exit_codes() {
        let man = generated(Generate::Man);
        assert!(man.starts_with(".ie \\n(.g .ds Aq"), "{}", &man[..80]);
        assert!(man.contains(".TH sockwatch 8"), "{man}");
        for opt in [
            "events",
            "json",
            "buffer\\-size",
            "max\\-sockets",
            "timeout",
        ] {
            assert!(man.contains(&format!("\\-\\-{opt}")), "--{opt} missing");
        }
        assert!(man.contains(".SH \"EXIT STATUS\""), "{man}");
        assert!(man.contains(".SH EXAMPLES"), "{man}");
        assert!(man.contains(".SH EXPRESSIONS"), "{man}");
        assert!(man.contains("result="), "{man}");
        assert!(!man.contains("generate"), "a hidden option is documented");
    }

    #[test]
    fn completions_know_the_options() {
        for kind in [
            Generate::CompleteBash,
            Generate::CompleteZsh,
            Generate::CompleteFish,
        ] {
            let script = generated(kind);
            for opt in ["--events", "--json", "--max-sockets", "--buffer-size"] {
                assert!(script.contains(&opt[2..]), "{kind:?} lacks {opt}");
            }
        }
    }
}
