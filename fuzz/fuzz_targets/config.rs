//! Configuration parsing and validation on arbitrary text: errors, never a panic; a
//! configuration that validates also compiles.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = vpcswitch_model::Config::from_toml_str(text) {
        let snap = vpcswitch_core::Snapshot::compile(&cfg, None).expect("valid configs compile");
        let _ = vpcswitch_core::Snapshot::compile(&cfg, Some(&snap)).expect("and recompile");
    }
});
