"""Push providers: one platform's push service each (`apns`: iOS; FCM for Android comes next),
behind the one interface in `base`, for the `mobile_push` channel to route devices to. This
package holds no list of providers: `mobile_push` says which platform each one serves.
"""
