//! The mapping layer: EID keys, longest-prefix tables per Instance-ID, the Map-Server's site
//! registrations and the ITR's map-cache. No I/O, no clock: times are passed in.

pub mod eid;
pub mod map_cache;
pub mod site;
pub mod table;

pub use eid::{EidKey, EidPrefix, GroupEid};
pub use map_cache::{CachedRloc, MapCache, MapCacheEntry, MappingSource, RlocState};
pub use site::{RegisterOutcome, SiteDb, SiteEntry, XtrRegistration, rle_entries, rle_locator};
pub use table::PrefixTable;
