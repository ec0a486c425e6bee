//! The XDP program (six instructions, written by hand), loading it, and attaching it
//! to the interface through a bpf link.

use std::ffi::CStr;
use std::os::fd::{OwnedFd, RawFd};

use crate::sys::{self, Insn};
use crate::{XdpError, XdpMode};

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `XDP_PASS`: what the program does with a frame of a queue without a socket.
const XDP_PASS: i32 = 2;
/// `BPF_FUNC_redirect_map`
const BPF_FUNC_REDIRECT_MAP: i32 = 51;

/// The XDP program, as instructions: redirect every frame to the AF_XDP socket at its
/// receive queue's slot in the XSKMAP `map_fd`, or pass it to the kernel when the slot
/// is empty. Written by hand (the eBPF ISA, Documentation/bpf/standardization/):
///
/// ```text
/// r2 = *(u32 *)(r1 + 16)      ; ctx->rx_queue_index
/// r1 = map_fd ll              ; BPF_PSEUDO_MAP_FD: the loader turns it into the map
/// r3 = 2                      ; XDP_PASS when the slot is empty (Linux 5.3+)
/// call bpf_redirect_map
/// exit                        ; its result is the verdict
/// ```
pub fn redirect_program(map_fd: RawFd) -> [Insn; 6] {
    let i = |code: u8, dst: u8, src: u8, off: i16, imm: i32| Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    };
    [
        // BPF_LDX | BPF_MEM | BPF_W
        i(0x61, 2, 1, 16, 0),
        // BPF_LD | BPF_IMM | BPF_DW, src = BPF_PSEUDO_MAP_FD; two slots
        i(0x18, 1, 1, 0, map_fd),
        i(0, 0, 0, 0, 0),
        // BPF_ALU64 | BPF_MOV | BPF_K
        i(0xb7, 3, 0, 0, XDP_PASS),
        // BPF_JMP | BPF_CALL
        i(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        // BPF_JMP | BPF_EXIT
        i(0x95, 0, 0, 0, 0),
    ]
}

/// Loads the program, with multi-buffer support (`BPF_F_XDP_HAS_FRAGS`) when the
/// kernel takes it; returns it and whether it has it.
pub(crate) fn load_program(map: RawFd) -> Result<(OwnedFd, bool), XdpError> {
    let insns = redirect_program(map);
    let license: &CStr = c"GPL";
    let frags = sys::BPF_F_XDP_HAS_FRAGS;
    if let Ok(p) = sys::prog_load_xdp(&insns, license, "vpcswitch_xsk", frags, &mut []) {
        return Ok((p, true));
    }
    match sys::prog_load_xdp(&insns, license, "vpcswitch_xsk", 0, &mut []) {
        Ok(p) => Ok((p, false)),
        Err(e) => {
            // again with the verifier's log, for the message
            let mut log = vec![0u8; 4096];
            let _ = sys::prog_load_xdp(&insns, license, "vpcswitch_xsk", 0, &mut log);
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end])
                .trim()
                .replace('\n', "; ");
            Err(XdpError::LoadProgram {
                verifier: text,
                source: e,
            })
        }
    }
}

/// Attaches the program in the mode asked for; returns the link and whether it is native.
pub(crate) fn attach(
    prog: RawFd,
    ifindex: u32,
    ifname: &str,
    mode: XdpMode,
) -> Result<(OwnedFd, bool), XdpError> {
    let native = sys::xdp_link_create(prog, ifindex, XDP_FLAGS_DRV_MODE);
    match (mode, native) {
        (XdpMode::Skb, _) => {}
        (_, Ok(l)) => return Ok((l, true)),
        (XdpMode::Auto, Err(_)) => {}
        (_, Err(source)) => {
            return Err(XdpError::AttachNative {
                ifname: ifname.to_string(),
                source,
            });
        }
    }
    sys::xdp_link_create(prog, ifindex, XDP_FLAGS_SKB_MODE)
        .map(|l| (l, false))
        .map_err(|source| XdpError::AttachGeneric {
            ifname: ifname.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_six_instructions_ending_in_exit() {
        let p = redirect_program(7);
        assert_eq!(p.len(), 6);
        assert_eq!(p[1].imm, 7, "the map descriptor is the ld_imm64 immediate");
        assert_eq!(p[1].regs, 0x11, "dst r1, src BPF_PSEUDO_MAP_FD");
        assert_eq!(p[5].code, 0x95);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }
}
