//! Parser for QEMU's `-chardev` option strings and the `-serial`/`-monitor`
//! shorthands (being written).
