//! The controlling terminal as an approver: the question on /dev/tty, one typed line back.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::question::{read_words, Verdict};

/// Is there a controlling terminal to ask?
pub(crate) fn available() -> bool {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .is_ok()
}

/// Ask on the terminal; `None` when there is none.
pub(crate) fn ask(
    message: &str,
    remember_allowed: bool,
    timeout: Duration,
) -> Option<(Verdict, String)> {
    let mut tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()?;
    let choices = if remember_allowed {
        "[approve / approve session / deny]"
    } else {
        "[approve / deny]"
    };
    // Nothing typed before the question was shown counts as its answer.
    // SAFETY: tcflush on a descriptor this function owns.
    unsafe {
        libc::tcflush(tty.as_raw_fd(), libc::TCIFLUSH);
    }
    let _ = write!(
        tty,
        "\n{message}\n{choices} (deny after {}s): ",
        timeout.as_secs()
    );
    let _ = tty.flush();
    let deadline = Instant::now() + timeout;
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = writeln!(tty, "\ncapjail: no answer in time; the call is refused");
            return Some((
                Verdict::TimedOut,
                "no answer on the terminal in time".into(),
            ));
        }
        let mut pfd = libc::pollfd {
            fd: tty.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Some((
                Verdict::Denied,
                "the terminal could not be read (deny)".into(),
            ));
        }
        if n == 0 {
            continue;
        }
        let mut b = [0u8; 256];
        match tty.read(&mut b) {
            Ok(0) | Err(_) => return Some((Verdict::Denied, "the terminal closed (deny)".into())),
            Ok(k) => {
                line.extend_from_slice(&b[..k]);
                if let Some(end) = line.iter().position(|&c| c == b'\n') {
                    let text = String::from_utf8_lossy(&line[..end]).into_owned();
                    return Some(read_words(&text, remember_allowed));
                }
                if line.len() > 4096 {
                    return Some((Verdict::Denied, "an over-long answer (deny)".into()));
                }
            }
        }
    }
}
