/* d.c defines a static a_helper of its own and names b_value only in a
 * comment: no edge. */
static int a_helper(int x) { return x; }
int d_value(int x) { return a_helper(x); }
