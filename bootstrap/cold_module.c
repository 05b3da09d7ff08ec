/* The cold module's one exported symbol: the table the front binary dlsym()s. */
#include "cold.h"
#include "install.h"
#include "pack.h"
#include "verify.h"

__attribute__((visibility("default"))) extern const struct cb_cold_ops cb_cold_ops_v1;

const struct cb_cold_ops cb_cold_ops_v1 = {
	.abi_version = CB_COLD_ABI_VERSION,
	.install = cb_install_run,
	.hash_file = cb_verify_hash_file,
	.pack = cb_pack_run,
};
