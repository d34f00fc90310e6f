mod bridge;
mod clients;
mod conformance;
mod faults;
mod legacy;
mod lifecycle;
mod ops;
mod tls;
