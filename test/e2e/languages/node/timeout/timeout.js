// ?slow sleeps past any small function timeout; otherwise answers at once.
module.exports = async (context) => {
  if (context.query.slow !== undefined) await new Promise((r) => setTimeout(r, 30_000));
  return { status: 200, body: "awake" };
};
