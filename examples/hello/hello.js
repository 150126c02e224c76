module.exports = async (context) => ({ status: 200, body: "Hello, world!\n" });
