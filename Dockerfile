# Convoy's control plane (API, controller) as an image; docker-compose.yml runs it.
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run generate
ENV NODE_ENV=production
EXPOSE 4000
CMD ["npx", "tsx", "src/main/api.ts"]
