//! GPIO input lines through the Linux GPIO character device, uAPI v2.
//!
//! A read opens the chip (`/dev/gpiochipN`), requests the one line as an
//! input with `GPIO_V2_GET_LINE_IOCTL`, reads it with
//! `GPIO_V2_LINE_GET_VALUES_IOCTL`, and closes both file descriptors,
//! which releases the line. Holding nothing between reads means another
//! program can use the line in between, and an unplugged expander simply
//! makes the next read `Unavailable`.
//!
//! The two ioctls are written here against `libc` instead of depending on
//! the `gpiocdev` crate: it costs about 2 KB of binary where gpiocdev
//! costs about 35 KB (see README.md, "Binary size"). The struct layouts
//! below follow `include/uapi/linux/gpio.h`; the tests pin their sizes and
//! offsets and the ioctl numbers to the header's values.

use std::path::Path;

use crate::error::SensorError;

/// Reads the line's logical value: `true` when active. With `active_low`
/// the kernel inverts the physical level for us.
pub(crate) fn read_line(
    sensor: &str,
    chip: &Path,
    line: u32,
    active_low: bool,
) -> Result<bool, SensorError> {
    imp::read_line(chip, line, active_low)
        .map_err(|reason| SensorError::unavailable(sensor, chip, reason))
}

#[cfg(all(feature = "gpio", any(target_os = "linux", target_os = "android")))]
mod imp {
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::path::Path;

    /// `GPIO_V2_LINES_MAX`: lines one request can hold.
    const LINES_MAX: usize = 64;
    /// `GPIO_MAX_NAME_SIZE`: the consumer label's buffer.
    const NAME_SIZE: usize = 32;
    /// `GPIO_V2_LINE_NUM_ATTRS_MAX`.
    const NUM_ATTRS_MAX: usize = 10;

    /// `GPIO_V2_LINE_FLAG_ACTIVE_LOW`.
    pub(super) const FLAG_ACTIVE_LOW: u64 = 1 << 1;
    /// `GPIO_V2_LINE_FLAG_INPUT`.
    pub(super) const FLAG_INPUT: u64 = 1 << 2;

    /// What the kernel shows as the line's consumer (`gpioinfo`), so an
    /// operator can see who holds a line that is busy.
    const CONSUMER: &[u8] = b"twig-sensors";

    // The kernel declares the 64-bit members `__aligned_u64`; `align(8)`
    // keeps the layout right on 32-bit targets where u64 aligns to 4.

    /// `struct gpio_v2_line_attribute`: an id and a union of u64 payloads.
    #[repr(C, align(8))]
    #[derive(Clone, Copy)]
    pub(super) struct LineAttribute {
        id: u32,
        padding: u32,
        value: u64,
    }

    /// `struct gpio_v2_line_config_attribute`.
    #[repr(C, align(8))]
    #[derive(Clone, Copy)]
    pub(super) struct LineConfigAttribute {
        attr: LineAttribute,
        mask: u64,
    }

    /// `struct gpio_v2_line_config`.
    #[repr(C, align(8))]
    pub(super) struct LineConfig {
        pub flags: u64,
        num_attrs: u32,
        padding: [u32; 5],
        pub attrs: [LineConfigAttribute; NUM_ATTRS_MAX],
    }

    /// `struct gpio_v2_line_request`: in, the lines and their config; out,
    /// `fd`, the file descriptor holding the request.
    #[repr(C, align(8))]
    pub(super) struct LineRequest {
        pub offsets: [u32; LINES_MAX],
        pub consumer: [u8; NAME_SIZE],
        pub config: LineConfig,
        pub num_lines: u32,
        event_buffer_size: u32,
        padding: [u32; 5],
        pub fd: i32,
    }

    /// `struct gpio_v2_line_values`: bit i is the line at `offsets[i]`.
    #[repr(C, align(8))]
    pub(super) struct LineValues {
        pub bits: u64,
        pub mask: u64,
    }

    impl LineRequest {
        /// A request for one line as an input.
        pub(super) fn input(line: u32, active_low: bool) -> LineRequest {
            let attr = LineConfigAttribute {
                attr: LineAttribute {
                    id: 0,
                    padding: 0,
                    value: 0,
                },
                mask: 0,
            };
            let mut req = LineRequest {
                offsets: [0; LINES_MAX],
                consumer: [0; NAME_SIZE],
                config: LineConfig {
                    flags: FLAG_INPUT | if active_low { FLAG_ACTIVE_LOW } else { 0 },
                    num_attrs: 0,
                    padding: [0; 5],
                    attrs: [attr; NUM_ATTRS_MAX],
                },
                num_lines: 1,
                event_buffer_size: 0,
                padding: [0; 5],
                fd: -1,
            };
            req.offsets[0] = line;
            req.consumer[..CONSUMER.len()].copy_from_slice(CONSUMER);
            req
        }
    }

    /// The `_IOWR(0xB4, nr, size)` request number. Most architectures
    /// encode direction in the top 2 bits (read|write = 3) and size in 14
    /// bits; MIPS, PowerPC and SPARC use 3 direction bits (read|write = 6)
    /// and 13 size bits.
    pub(super) const fn iowr(nr: u32, size: usize) -> u32 {
        const GPIO_IOCTL_TYPE: u32 = 0xB4;
        #[cfg(any(
            target_arch = "mips",
            target_arch = "mips64",
            target_arch = "powerpc",
            target_arch = "powerpc64",
            target_arch = "sparc",
            target_arch = "sparc64"
        ))]
        const DIR_READ_WRITE: u32 = 6 << 29;
        #[cfg(not(any(
            target_arch = "mips",
            target_arch = "mips64",
            target_arch = "powerpc",
            target_arch = "powerpc64",
            target_arch = "sparc",
            target_arch = "sparc64"
        )))]
        const DIR_READ_WRITE: u32 = 3 << 30;
        DIR_READ_WRITE | ((size as u32) << 16) | (GPIO_IOCTL_TYPE << 8) | nr
    }

    /// `GPIO_V2_GET_LINE_IOCTL`, on the chip's fd.
    pub(super) const GET_LINE: u32 = iowr(0x07, std::mem::size_of::<LineRequest>());
    /// `GPIO_V2_LINE_GET_VALUES_IOCTL`, on the line request's fd.
    pub(super) const GET_VALUES: u32 = iowr(0x0E, std::mem::size_of::<LineValues>());

    #[allow(unsafe_code)] // the two ioctls and the fd they return; SAFETY notes below
    pub(super) fn read_line(chip: &Path, line: u32, active_low: bool) -> Result<bool, String> {
        // Read-only is enough for both ioctls, and needs the least
        // permission on the device node.
        let chip_file = File::open(chip).map_err(|e| e.to_string())?;

        let mut req = LineRequest::input(line, active_low);
        // SAFETY: the fd is open for the duration of the call and `req` is
        // a live, exclusively borrowed struct of exactly the size encoded
        // in GET_LINE, laid out as the kernel's gpio_v2_line_request. The
        // `as _` adapts to libc's request type (c_ulong on glibc, c_int on
        // musl); the bit pattern is what matters.
        let rc = unsafe {
            libc::ioctl(
                chip_file.as_raw_fd(),
                GET_LINE as _,
                &mut req as *mut LineRequest,
            )
        };
        if rc < 0 {
            return Err(explain(io::Error::last_os_error(), line));
        }
        if req.fd < 0 {
            return Err(format!("line {line}: the kernel returned no request fd"));
        }
        // SAFETY: on success the kernel put a new file descriptor in
        // `req.fd` that nothing else owns; OwnedFd closes it on drop, which
        // releases the line.
        let line_fd = unsafe { OwnedFd::from_raw_fd(req.fd) };

        let mut values = LineValues { bits: 0, mask: 1 };
        // SAFETY: as above, with a live gpio_v2_line_values of the size
        // encoded in GET_VALUES.
        let rc = unsafe {
            libc::ioctl(
                line_fd.as_raw_fd(),
                GET_VALUES as _,
                &mut values as *mut LineValues,
            )
        };
        if rc < 0 {
            return Err(explain(io::Error::last_os_error(), line));
        }
        Ok(values.bits & 1 == 1)
    }

    /// Turns the errno of a GPIO ioctl into a reason an operator can act on.
    fn explain(e: io::Error, line: u32) -> String {
        match e.raw_os_error() {
            Some(libc::ENOTTY) => format!("not a GPIO character device ({e})"),
            Some(libc::EINVAL) => format!("line {line} does not exist on this chip ({e})"),
            Some(libc::EBUSY) => format!("line {line} is held by another consumer ({e})"),
            _ => format!("line {line}: {e}"),
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use std::path::Path;

    pub(super) fn read_line(_chip: &Path, _line: u32, _active_low: bool) -> Result<bool, String> {
        Err("GPIO character devices exist only on Linux".into())
    }
}

/// Without the `gpio` feature no GPIO sensor gets past the config check
/// (`provider::build`), so this is never reached.
#[cfg(all(not(feature = "gpio"), any(target_os = "linux", target_os = "android")))]
mod imp {
    use std::path::Path;

    pub(super) fn read_line(_chip: &Path, _line: u32, _active_low: bool) -> Result<bool, String> {
        Err(super::NOT_BUILT.into())
    }
}

/// Why a GPIO sensor is refused by a build without the `gpio` feature.
pub(crate) const NOT_BUILT: &str =
    "this build has no GPIO support (twig: cargo feature `sensors-gpio`)";

#[cfg(all(
    test,
    feature = "gpio",
    any(target_os = "linux", target_os = "android")
))]
mod tests {
    use super::imp::*;
    use std::mem::{offset_of, size_of};

    /// Sizes and offsets as `include/uapi/linux/gpio.h` defines them
    /// (the same on every architecture: the kernel pads explicitly).
    #[test]
    fn struct_layouts_match_the_kernel_header() {
        assert_eq!(size_of::<LineAttribute>(), 16);
        assert_eq!(size_of::<LineConfigAttribute>(), 24);
        assert_eq!(size_of::<LineConfig>(), 272);
        assert_eq!(size_of::<LineValues>(), 16);
        assert_eq!(size_of::<LineRequest>(), 592);
        assert_eq!(offset_of!(LineRequest, consumer), 256);
        assert_eq!(offset_of!(LineRequest, config), 288);
        assert_eq!(offset_of!(LineRequest, num_lines), 560);
        assert_eq!(offset_of!(LineRequest, fd), 588);
        assert_eq!(offset_of!(LineConfig, attrs), 32);
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm"))]
    #[test]
    fn ioctl_numbers_match_the_kernel_header() {
        assert_eq!(GET_LINE, 0xC250_B407);
        assert_eq!(GET_VALUES, 0xC010_B40E);
    }

    #[test]
    fn input_request() {
        let req = LineRequest::input(17, true);
        assert_eq!(req.offsets[0], 17);
        assert_eq!(req.num_lines, 1);
        assert_eq!(req.config.flags, FLAG_INPUT | FLAG_ACTIVE_LOW);
        assert_eq!(&req.consumer[..13], b"twig-sensors\0");
        assert_eq!(LineRequest::input(0, false).config.flags, FLAG_INPUT);
    }

    #[test]
    fn a_file_that_is_not_a_chip_is_refused() {
        let err = read_line(std::path::Path::new("/dev/null"), 0, false).unwrap_err();
        assert!(err.contains("not a GPIO character device"), "{err}");
    }
}
