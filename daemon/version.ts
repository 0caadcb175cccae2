// The one version string (CLI --version, ublk_ts_build_info); keep in step with package.json.
export const VERSION = '0.1.0';
