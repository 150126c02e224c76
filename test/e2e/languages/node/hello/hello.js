// Fission's Node hello world.
module.exports = async function () {
  return { status: 200, body: "Hello, world!\n" };
};
