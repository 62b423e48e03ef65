int a_value(int x);
static int (*f)(int) = a_value; /* a pointer taken counts as a call */
int
c_value(int x)
{
  return f(x);
}
