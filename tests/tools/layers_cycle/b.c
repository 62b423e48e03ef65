/* "a_value(" in a comment or a string is not a call. */
int a_value(int x);
static const char *s = "a_value(";
int b_value(int x) { return x > 1 ? a_value(x - 1) : (int)s[0]; }
