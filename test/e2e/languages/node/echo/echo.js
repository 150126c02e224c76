// Answers the parsed JSON body back as JSON.
module.exports = async (context) => ({ status: 200, body: context.body });
