/* Fixture of lint_layers_cycle: a.c and b.c call each other (a cycle the
 * tool must report), c.c only calls (a layer above them). */
int b_value(int x);
static int a_helper(int x) { return x + 1; }
int a_value(int x) { return x > 0 ? b_value(x - 1) : a_helper(x); }
