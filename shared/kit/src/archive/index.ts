/**
 * Safe archive extraction (`@fizz/kit/archive`): a .tar, .tar.gz or .zip into a fresh directory,
 * refusing what could escape it or swamp the disk. A separate entry point, so services that
 * never extract do not load tar or yauzl.
 */
export { ArchiveError, type ArchiveRule } from "./errors.js";
export { DEFAULT_ARCHIVE_LIMITS, type ArchiveLimits } from "./limits.js";
export { detectFormat, extractArchive, type ArchiveFormat, type ExtractResult } from "./extract.js";
export { packDirectory, type PackOptions, type PackResult } from "./pack.js";
export { canonicalize, type CanonicalArchive, type CanonicalLimits } from "./canonical.js";
