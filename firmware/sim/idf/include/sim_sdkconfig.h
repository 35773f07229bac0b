/*
 * sim_sdkconfig.h — run-time values of the Kconfig options that the virtual board's
 * --config file may set (tools/gen_sdkconfig.py, docs/sim.md). Included by the generated
 * sdkconfig.h only.
 */
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

/* The --config value of Kconfig symbol `name` (without CONFIG_), else `kconfig_value`. */
const char *sim_sdkconfig_str(const char *name, const char *kconfig_value);
long long sim_sdkconfig_int(const char *name, long long kconfig_value);

#ifdef __cplusplus
}
#endif
