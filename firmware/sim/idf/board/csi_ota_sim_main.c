/* csi_ota_sim_main.c — main() of csi-ota-sim: power on the virtual board (sim_board.c). */
#include "sim_board.h"

void app_main(void); /* firmware/main/app_main.c */

int main(int argc, char **argv) {
    return sim_board_run(argc, argv, app_main);
}
