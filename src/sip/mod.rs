//! SIP signalling: parsing behind strict checks, transactions, dialogs, UAS/UAC. Pure: time is
//! passed in.

pub mod message;
