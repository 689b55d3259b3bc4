/* conf_reference.c - prints conf_print_reference(): the configuration
 * reference (markdown tables) made from the option table in src/conf.c.
 * scripts/manref.py turns it into the KEYS section of man/mqtt2zeebe.ini.5;
 * tests/integration/test_man.py checks that page and README.md against it. */
#include <stdio.h>

#include "conf.h"

int main(void)
{
	conf_print_reference(stdout);
	return fflush(stdout) == 0 ? 0 : 1;
}
