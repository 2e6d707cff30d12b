/** modhub client SDK: `ModhubClient`, `ModhubError` and the API's wire types. */
export * from './client';
export * from './errors';
export * from './types';
