//! Fuzz target `sip_ua`: the SIP user agent core (incoming and dialed calls, registrations)
//! driven statefully on virtual time, no sockets: the input is a script of datagrams, fuzzed
//! requests, answers to what the core sent, in-dialog requests, commands, time and a shutdown
//! (`roomkit_media::backend::sip_ua::fuzz`, which also checks the invariants).
#![no_main]

// Each script twice: sessions started at once, and started off the SIP thread (reported later).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    roomkit_media::backend::sip_ua::fuzz::run(data);
    roomkit_media::backend::sip_ua::fuzz::run_deferred(data);
});
