/** modhub client SDK: `ModhubClient`, `ModhubError`, the error codes and the API's wire schemas and types. */
export * from './client';
export * from './codes';
export * from './errors';
export * from './wire';
