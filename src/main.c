/* main.c - command line of bsodmon. The monitor and the plugin land in later
 * changes; for now this prints the build's options and version. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--version") == 0)) {
        printf("bsodmon 0.1.0\n");
        return 0;
    }
    fprintf(stderr, "bsodmon: nothing to do yet (see --version)\n");
    return 1;
}
