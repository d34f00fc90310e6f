mod bridge;
mod clients;
mod faults;
mod legacy;
mod lifecycle;
